//! Code generation: the cached fn, its hidden body and cache, and the `invalidate_`/`refresh_` helpers.

use proc_macro2::{Literal, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{parse_quote, Attribute, FnArg, Ident, Signature, Token, Type, TypePath};

use crate::validate::{borrows, Backend, Cached, Key, OnFailure, Write};

/// What an invalid input becomes: the item as written, so IDEs keep working, and the errors.
pub(crate) fn fallback(item: TokenStream, errors: darling::Error) -> TokenStream {
    let errors = errors.write_errors();
    quote!(#item #errors)
}

/// The expansion of a valid input (see the crate docs for its shape).
pub(crate) fn expand(cached: &Cached) -> TokenStream {
    let Cached {
        item,
        output,
        receiver,
        args,
        ..
    } = cached;
    let sig = &item.sig;
    let fn_name = sig.ident.unraw().to_string();
    let visible = |prefix: &str| format_ident!("{}_{}", prefix, sig.ident, span = sig.ident.span());
    let hidden =
        |prefix: &str| format_ident!("__tiered_{}_{}", prefix, sig.ident, span = at(sig.ident.span()));
    let (body_fn, cache_fn) = (hidden("body"), hidden("cache"));
    let (invalidate_fn, invalidate_all_fn, refresh_fn) = (
        visible("invalidate"),
        visible("invalidate_all"),
        visible("refresh"),
    );

    let cfgs: Vec<&Attribute> = item
        .attrs
        .iter()
        .filter(|attr| attr.path().is_ident("cfg"))
        .collect();
    let lints: Vec<Attribute> = item
        .attrs
        .iter()
        .filter(|attr| is_lint(attr))
        .map(relax)
        .collect();
    let outer: Vec<Attribute> = item.attrs.iter().map(relax).collect();
    let vis = &item.vis;
    let idents: Vec<Ident> = args.iter().map(|arg| generated(&arg.ident)).collect();
    let KeyForm { expr: key, stored } = key_form(cached);

    // The cached fn and `refresh_`: the signature as written, less `mut` and argument patterns.
    let mut inputs: Punctuated<FnArg, Token![,]> = Punctuated::new();
    if let Some(receiver) = receiver {
        let mut receiver = receiver.clone();
        receiver.attrs.clear();
        if receiver.reference.is_none() {
            receiver.mutability = None;
        }
        inputs.push(FnArg::Receiver(receiver));
    }
    for arg in args {
        let (ident, ty) = (&arg.ident, &arg.ty);
        inputs.push(parse_quote!(#ident: #ty));
    }
    let outer_sig = Signature {
        inputs: inputs.clone(),
        ..sig.clone()
    };
    let refresh_sig = Signature {
        ident: refresh_fn,
        ..outer_sig.clone()
    };
    // `invalidate_`: no receiver unless the key uses `self`, and no return value but the backend's.
    let unit_result = quote!(::core::result::Result<(), ::tiered::__private::BackendError>);
    let mut invalidate_inputs = inputs;
    if receiver.is_some() {
        let first = invalidate_inputs.into_iter().skip(1);
        invalidate_inputs = match cached.key {
            Key::Custom { uses_self: true, .. } => {
                std::iter::once(parse_quote!(&self)).chain(first).collect()
            }
            _ => first.collect(),
        };
    }
    let invalidate_sig = Signature {
        ident: invalidate_fn,
        inputs: invalidate_inputs,
        output: parse_quote!(-> #unit_result),
        ..sig.clone()
    };
    let body_sig = Signature {
        ident: body_fn.clone(),
        ..sig.clone()
    };

    // The calls require `V: Clone + Send + Sync`: they are spanned at `V` in the signature, so
    // their errors point there.
    let value = &output.value;
    let at_value = at(output.value_span);
    let cache_fn_at_value = Ident::new(&cache_fn.to_string(), at_value);
    let (cache, body_call, get) = match receiver {
        None => (
            quote_spanned!(at_value=> #cache_fn_at_value()),
            quote!(#body_fn(#(#idents),*)),
            quote_spanned!(at_value=> get()),
        ),
        Some(receiver) => {
            let self_token = &receiver.self_token;
            (
                quote_spanned!(at_value=> Self::#cache_fn_at_value()),
                quote!(Self::#body_fn(#self_token #(, #idents)*)),
                quote_spanned!(at_value=> get_for::<Self>()),
            )
        }
    };
    // An L1 hit is returned in place (see `FnCache::hit`); the key is resolved before the
    // arguments move into the body.
    let hit = match output.is_result {
        true => quote!(::core::result::Result::Ok(__tiered_value)),
        false => quote!(__tiered_value),
    };
    // The key past L1, with the entry's tags (evaluated on a miss only) if it has any.
    let resolve = |key: &TokenStream| match &cached.tags {
        None => quote_spanned!(at_value=> #cache.resolve(#key)),
        Some(expr) => {
            let shadows = shadows(cached);
            let tags = quote_spanned!(at(expr.span())=> ::tiered::__private::tags(#expr));
            quote_spanned!(at_value=> #cache.resolve_tagged(#key, { #(#shadows)* #tags }))
        }
    };
    let resolved = resolve(&quote!(__tiered_key));
    // With a timeout the body runs in a task of its own, so a caller can stop waiting for it.
    let settings = &cached.settings;
    let miss = match settings.timeout.is_some() || settings.hard_timeout.is_some() {
        true => quote_spanned!(at_value=> call_detached),
        false => quote_spanned!(at_value=> call),
    };
    let called = match settings.eager_refresh {
        None => quote_spanned! {at_value=>
            let __tiered_key = #key;
            match #cache.hit(&__tiered_key) {
                ::core::option::Option::Some(__tiered_value) => #hit,
                ::core::option::Option::None => #cache.#miss(#resolved, #body_call).await,
            }
        },
        Some(_) => quote_spanned! {at_value=>
            let __tiered_key = #key;
            match #cache.hit_aged(&__tiered_key) {
                ::tiered::__private::Hit::Fresh(__tiered_value) => #hit,
                ::tiered::__private::Hit::Due(__tiered_value) => {
                    #cache.renew(#resolved, #body_call);
                    #hit
                }
                ::tiered::__private::Hit::Miss => #cache.#miss(#resolved, #body_call).await,
            }
        },
    };
    let refreshed_key = resolve(&key);
    let refreshed = quote_spanned!(at_value=> #cache.refresh(#refreshed_key, #body_call).await);
    let invalidated = quote_spanned!(at_value=> #cache.invalidate(#cache.resolve(#key)).await);
    let invalidated_all = quote_spanned!(at_value=> #cache.invalidate_all().await);

    let spec = spec(cached, &fn_name);
    let returned = &output.returned;
    let site = quote_spanned!(at_value=> ::tiered::__private::Site<#value, #stored, #returned>);
    let site_new = quote_spanned!(at_value=> ::tiered::__private::Site::new(#spec));
    let block = &item.block;
    let docs = Docs::new(cached, &fn_name);
    let (invalidate_doc, invalidate_all_doc, refresh_doc) =
        (&docs.invalidate, &docs.invalidate_all, &docs.refresh);

    quote! {
        #(#outer)*
        #vis #outer_sig {
            #called
        }

        #[doc(hidden)]
        #[allow(dead_code)]
        #(#cfgs)*
        #(#lints)*
        #body_sig #block

        #[doc(hidden)]
        #[allow(dead_code)]
        #(#cfgs)*
        fn #cache_fn() -> &'static ::tiered::__private::FnCache<#value, #stored, #returned> {
            static __TIERED_SITE: #site = #site_new;
            __TIERED_SITE.#get
        }

        #(#[doc = #invalidate_doc])*
        #[allow(dead_code)]
        #(#cfgs)*
        #(#lints)*
        #vis #invalidate_sig {
            #invalidated
        }

        #(#[doc = #invalidate_all_doc])*
        #[allow(dead_code)]
        #(#cfgs)*
        #vis async fn #invalidate_all_fn() -> #unit_result {
            #invalidated_all
        }

        #(#[doc = #refresh_doc])*
        #[allow(dead_code)]
        #(#cfgs)*
        #(#lints)*
        #vis #refresh_sig {
            #refreshed
        }
    }
}

/// How L1 keys a call (see the runtime's `call_key`): the key expression the generated calls
/// pass, and the type L1 stores.
struct KeyForm {
    expr: TokenStream,
    stored: TokenStream,
}

/// The arguments as they are when every one is a [`Part`], else their encoding. The encoding
/// shadows every argument by a reference first, so a `key` expression never moves one.
fn key_form(cached: &Cached) -> KeyForm {
    let typed: Option<Vec<(Part, Ident)>> = match cached.key {
        Key::Arguments(_) if cached.args.len() <= MAX_PARTS => cached
            .args
            .iter()
            .map(|arg| Some((part(&arg.ty)?, generated(&arg.ident))))
            .collect(),
        _ => None,
    };
    if let Some(parts) = typed {
        let (exprs, stored): (Vec<TokenStream>, Vec<TokenStream>) = parts
            .into_iter()
            .map(|(part, ident)| match part {
                Part::Scalar { ty, by_ref: false } => (quote!(#ident), quote!(#ty)),
                Part::Scalar { ty, by_ref: true } => (quote!(*#ident), quote!(#ty)),
                Part::Str => (
                    quote!(::core::convert::AsRef::<str>::as_ref(&#ident)),
                    quote!(::std::string::String),
                ),
            })
            .unzip();
        return KeyForm {
            expr: quote!(::tiered::__private::Parts((#(#exprs,)*))),
            stored: quote!((#(#stored,)*)),
        };
    }
    let idents: Vec<Ident> = cached.args.iter().map(|arg| generated(&arg.ident)).collect();
    let shadows = shadows(cached);
    // `KeyArgs` picks the typed form by trait bounds, which cannot see lifetimes: a type that
    // borrows would be held to `'static` instead of falling back, so it is encoded outright.
    let typed = match cached.key {
        Key::Arguments(_) => {
            cached.args.len() <= MAX_PARTS && cached.args.iter().all(|arg| !borrows(referent(&arg.ty)))
        }
        Key::Custom { .. } => false,
    };
    let expr = match &cached.key {
        Key::Arguments(span) if typed => {
            let args = quote_spanned!(at(*span)=> (#(#idents,)*));
            // First, the plain requirement with its plain error; then the form.
            let serializable = quote_spanned!(at(*span)=> ::tiered::__private::key_arguments(&#args));
            quote! {{
                #[allow(unused_imports)]
                use ::tiered::__private::{ViaBytes as _, ViaTyped as _};
                #(#shadows)*
                #serializable;
                (&::tiered::__private::KeyArgs(#args)).form()
            }}
        }
        Key::Arguments(span) => {
            let encoded = quote_spanned!(at(*span)=> ::tiered::__private::key(&(#(#idents,)*)));
            quote!({ #(#shadows)* #encoded })
        }
        Key::Custom { expr, .. } => {
            let encoded = quote_spanned!(at(expr.span())=> ::tiered::__private::key(&(#expr)));
            quote!({ #(#shadows)* #encoded })
        }
    };
    KeyForm {
        expr,
        stored: quote!(::tiered::__private::AnyKey),
    }
}

/// Every argument as a reference (one already a reference stays as it is), so an expression
/// over them (`key`, `tags`) never moves one, and `KeyArgs` sees the referenced types.
fn shadows(cached: &Cached) -> Vec<TokenStream> {
    cached
        .args
        .iter()
        .map(|arg| {
            let ident = generated(&arg.ident);
            match peel(&arg.ty) {
                Type::Reference(_) => quote!(#[allow(unused_variables)] let #ident = &*#ident;),
                _ => quote!(#[allow(unused_variables)] let #ident = &#ident;),
            }
        })
        .collect()
}

/// The type a reference argument refers to, or the type itself.
fn referent(ty: &Type) -> &Type {
    match peel(ty) {
        Type::Reference(reference) => &reference.elem,
        ty => ty,
    }
}

/// A type without the parentheses and invisible groups around it.
fn peel(ty: &Type) -> &Type {
    match ty {
        Type::Group(group) => peel(&group.elem),
        Type::Paren(paren) => peel(&paren.elem),
        ty => ty,
    }
}

/// The most arguments the runtime's `Parts` takes.
const MAX_PARTS: usize = 8;

/// An argument type L1 keys by as it is (the runtime's `KeyPart`s).
enum Part {
    /// An integer, `bool` or `char`, or a reference to one.
    Scalar { ty: Ident, by_ref: bool },
    /// `String`, `&str` or `&String`, looked up as `&str`.
    Str,
}

const SCALARS: [&str; 14] = [
    "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32", "i64", "i128", "isize", "bool", "char",
];

/// The part an argument of type `ty` is, told by its name: only names without generics or
/// lifetimes qualify, as L1 must own its keys (`'static`), which the names promise.
fn part(ty: &Type) -> Option<Part> {
    match ty {
        Type::Group(group) => part(&group.elem),
        Type::Paren(paren) => part(&paren.elem),
        Type::Reference(reference) => match bare_name(&reference.elem)? {
            name if name == "str" || name == "String" => Some(Part::Str),
            name => scalar(name, true),
        },
        ty => match bare_name(ty)? {
            name if name == "String" => Some(Part::Str),
            name => scalar(name, false),
        },
    }
}

fn scalar(name: &Ident, by_ref: bool) -> Option<Part> {
    SCALARS.iter().any(|scalar| name == scalar).then(|| Part::Scalar {
        ty: name.clone(),
        by_ref,
    })
}

/// The name of a type written as one identifier (`u64`, `String`), or `String` written in full.
fn bare_name(ty: &Type) -> Option<&Ident> {
    let Type::Path(TypePath { qself: None, path }) = ty else {
        return None;
    };
    if path.segments.iter().any(|segment| !segment.arguments.is_none()) {
        return None;
    }
    let names: Vec<String> = path
        .segments
        .iter()
        .map(|segment| segment.ident.to_string())
        .collect();
    let in_full = matches!(
        names.iter().map(String::as_str).collect::<Vec<_>>()[..],
        ["std" | "alloc", "string", "String"]
    );
    match (path.leading_colon, names.len()) {
        (None, 1) => path.get_ident(),
        _ if in_full => path.segments.last().map(|segment| &segment.ident),
        _ => None,
    }
}

/// The `Spec` literal of the function's `Site`.
fn spec(cached: &Cached, fn_name: &str) -> TokenStream {
    let settings = &cached.settings;
    let name = match (&settings.name, &cached.receiver) {
        (Some(name), _) => quote!(::tiered::__private::CacheName::Fixed(#name)),
        (None, None) => quote! {
            ::tiered::__private::CacheName::Fixed(::core::concat!(::core::module_path!(), "::", #fn_name))
        },
        (None, Some(_)) => quote! {
            ::tiered::__private::CacheName::Method { module: ::core::module_path!(), method: #fn_name }
        },
    };
    let version = Literal::u32_unsuffixed(settings.version);
    let on_failure = match settings.on_failure {
        OnFailure::L1Only => quote!(L1Only),
        // `escalate` requires `E: From<BackendError>`: its error points at `E`.
        OnFailure::Error => {
            let escalate = quote_spanned!(at(cached.output.error_span)=> ::tiered::__private::escalate);
            quote!(Error(#escalate))
        }
        OnFailure::Retry(attempts) => {
            let attempts = Literal::u8_unsuffixed(attempts);
            quote!(Retry { attempts: #attempts })
        }
    };
    let millis = |duration: std::time::Duration| {
        let millis = Literal::u128_unsuffixed(duration.as_millis());
        quote!(::tiered::__private::Duration::from_millis(#millis))
    };
    let ttl = |ttl: Option<std::time::Duration>| match ttl {
        None => quote!(::core::option::Option::None),
        Some(ttl) => {
            let ttl = millis(ttl);
            quote!(::core::option::Option::Some(#ttl))
        }
    };
    let (l1_ttl, l2_ttl) = (ttl(settings.l1_ttl), ttl(settings.l2_ttl));
    let l1_capacity = Literal::u64_unsuffixed(settings.l1_capacity);
    let write = match settings.write {
        Write::Through => quote!(Through),
        Write::Behind => quote!(Behind),
    };
    let fail_safe = match settings.fail_safe {
        None => quote!(::core::option::Option::None),
        Some((window, throttle)) => {
            let (window, throttle) = (millis(window), millis(throttle));
            quote!(::core::option::Option::Some(::tiered::__private::FailSafe { window: #window, throttle: #throttle }))
        }
    };
    let timeout = ttl(settings.timeout);
    let hard_timeout = match settings.hard_timeout {
        None => quote!(::core::option::Option::None),
        Some(after) => {
            let after = millis(after);
            // `time_out` requires `E: From<TimedOut>`: its error points at `E`.
            let time_out = quote_spanned!(at(cached.output.error_span)=> ::tiered::__private::time_out);
            quote!(::core::option::Option::Some(::tiered::__private::HardTimeout { after: #after, timed_out: #time_out }))
        }
    };
    let eager_refresh = match settings.eager_refresh {
        None => quote!(::core::option::Option::None),
        Some(fraction) => {
            let fraction = Literal::f64_unsuffixed(fraction);
            quote!(::core::option::Option::Some(#fraction))
        }
    };
    let fleet_lease = ttl(settings.fleet_lease);
    let uncached = match settings.cache_none {
        true => quote!(::core::option::Option::None),
        false => quote!(::core::option::Option::Some(::core::option::Option::is_none)),
    };
    let codec = match settings.backend {
        Backend::None => quote!(::core::option::Option::None),
        Backend::Pg => {
            // The stored type's `Serialize + DeserializeOwned` bounds: errors point at it.
            let value = &cached.output.value;
            quote_spanned!(at(cached.output.value_span)=> ::tiered::__private::serde_codec::<#value>())
        }
    };
    // `Site::new(spec)` requires `V: Clone + Send + Sync`: errors point at `V`.
    quote_spanned! {at(cached.output.value_span)=>
        ::tiered::__private::Spec {
            name: #name,
            version: #version,
            on_failure: ::tiered::__private::OnFailure::#on_failure,
            l1_ttl: #l1_ttl,
            l2_ttl: #l2_ttl,
            l1_capacity: #l1_capacity,
            write: ::tiered::__private::WriteMode::#write,
            codec: #codec,
            fail_safe: #fail_safe,
            timeout: #timeout,
            hard_timeout: #hard_timeout,
            eager_refresh: #eager_refresh,
            uncached: #uncached,
            fleet_lease: #fleet_lease,
        }
    }
}

/// The doc comments of the public helpers, as lines.
struct Docs {
    invalidate: Vec<String>,
    invalidate_all: Vec<String>,
    refresh: Vec<String>,
}

impl Docs {
    fn new(cached: &Cached, fn_name: &str) -> Self {
        let f = format!("`{fn_name}`");
        let pg = cached.settings.backend == Backend::Pg;
        let propagates = cached.settings.on_failure == OnFailure::Error;
        let tiers = if pg { "L1 and L2" } else { "L1" };
        let everywhere = if pg {
            ", and tells every other process to drop it from its L1 (after a short notification delay)"
        } else {
            ""
        };
        let failure = |what: &str| match (pg, propagates) {
            (false, _) => "There is no L2 to fail: it always returns `Ok`.".to_owned(),
            (true, true) => format!(
                "A backend failure is returned as `Err` (`on_failure = \"error\"`); {what} is removed from \
                 this process's L1 all the same."
            ),
            (true, false) => format!(
                "A backend failure is logged, and {what} is removed from this process's L1 all the same; \
                 it then returns `Ok`."
            ),
        };
        let stored = if cached.output.is_result {
            "an `Ok` result"
        } else {
            "the result"
        };
        let refresh_failure = if pg && propagates {
            " A backend failure is returned as `Err` (`on_failure = \"error\"`)."
        } else {
            ""
        };
        Docs {
            invalidate: vec![
                format!(" Removes the cached result of {f} for these arguments from {tiers}{everywhere}."),
                format!(" After it returns `Ok`, no call of {f} returns the removed value."),
                String::new(),
                format!(" {}", failure("the entry")),
            ],
            invalidate_all: vec![
                format!(" Removes every cached result of {f} from {tiers}{everywhere}."),
                String::new(),
                format!(" {}", failure("every entry")),
            ],
            refresh: vec![
                format!(
                    " Runs the body of {f} now, bypassing the cache, and stores {stored} in {tiers} as the"
                ),
                format!(
                    " newest entry for these arguments. Returns what the body returned.{refresh_failure}"
                ),
            ],
        }
    }
}

/// A lint-level attribute (`allow`, `expect`, `warn`, `deny`, `forbid`).
fn is_lint(attr: &Attribute) -> bool {
    ["allow", "expect", "warn", "deny", "forbid"]
        .iter()
        .any(|level| attr.path().is_ident(level))
}

/// `#[expect(…)]` as `#[allow(…)]`: the fn is split in several, and a lint expected in one part
/// does not fire in the others, which would report the expectation as unfulfilled.
fn relax(attr: &Attribute) -> Attribute {
    let mut attr = attr.clone();
    if let syn::Meta::List(list) = &mut attr.meta {
        if list.path.is_ident("expect") {
            list.path = Ident::new("allow", list.path.span()).into();
        }
    }
    attr
}

/// An argument's name where generated code uses it: it resolves as written, but lints about
/// uses and bindings (`used_underscore_binding` for `_unused: bool`, shadowing) see generated code.
fn generated(ident: &Ident) -> Ident {
    let mut ident = ident.clone();
    ident.set_span(at(ident.span()));
    ident
}

/// A span at `span`'s place that resolves like the macro's own tokens: errors point at the
/// user's code, and lints treat the tokens as generated.
fn at(span: Span) -> Span {
    Span::call_site().located_at(span)
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;
    use quote::ToTokens;

    fn expansion(args: TokenStream, item: TokenStream) -> String {
        let cached = crate::validate::validate(args, item).unwrap_or_else(|err| panic!("{err}"));
        expand(&cached).to_string()
    }

    #[test]
    fn a_method_calls_its_helpers_through_self() {
        let out = expansion(
            quote!(backend = "none"),
            quote!(
                async fn user(&self, mut id: u64) -> u8 {
                    1
                }
            ),
        );
        assert!(out.contains(
            "async fn user (& self , id : u64) -> u8 { let __tiered_key = :: tiered :: __private :: Parts ((id ,)) ; \
             match Self :: __tiered_cache_user () . hit (& __tiered_key)"
        ));
        assert!(out.contains(
            "None => Self :: __tiered_cache_user () . call (Self :: __tiered_cache_user () . resolve (__tiered_key) ,"
        ));
        assert!(out.contains("Self :: __tiered_body_user (self , id)"));
        assert!(out.contains("async fn __tiered_body_user (& self , mut id : u64) -> u8 { 1 }"));
        assert!(
            out.contains("CacheName :: Method { module : :: core :: module_path ! () , method : \"user\" }")
        );
        assert!(out.contains("__TIERED_SITE . get_for :: < Self > ()"));
        assert!(out.contains("async fn invalidate_user (id : u64)"));
        assert!(out.contains("async fn refresh_user (& self , id : u64) -> u8"));
        assert!(out.contains("codec : :: core :: option :: Option :: None"));

        let out = expansion(
            quote!(key = "(self.tenant, id)"),
            quote!(
                async fn user(&self, id: u64) -> u8 {
                    1
                }
            ),
        );
        assert!(out.contains("async fn invalidate_user (& self , id : u64)"));
        assert!(out.contains("serde_codec :: < u8 > ()"));
    }

    #[test]
    fn a_free_fn_is_named_after_its_module_and_keyed_by_its_arguments() {
        let out = expansion(
            quote!(on_failure = "error", ttl = "10m", l1_ttl = "1s"),
            quote!(
                pub async fn f((a, b): (u8, u8), c: &str) -> Result<u8, E> {
                    Ok(a)
                }
            ),
        );
        assert!(out.contains("pub async fn f (__tiered_arg0 : (u8 , u8) , c : & str) -> Result < u8 , E >"));
        assert!(out.contains(
            "# [allow (unused_variables)] let __tiered_arg0 = & __tiered_arg0 ; # [allow (unused_variables)] let c = & * c ; \
             :: tiered :: __private :: key_arguments (& (__tiered_arg0 , c ,)) ; \
             (& :: tiered :: __private :: KeyArgs ((__tiered_arg0 , c ,))) . form ()"
        ));
        assert!(out.contains("OnFailure :: Error (:: tiered :: __private :: escalate)"));
        assert!(out.contains(". call (__tiered_cache_f () . resolve (__tiered_key) ,"));
        assert!(out.contains("__tiered_cache_f () . refresh (__tiered_cache_f () . resolve ("));
        assert!(out.contains("Site < u8 , :: tiered :: __private :: AnyKey , Result < u8 , E > >"));
        assert!(out.contains(
            "CacheName :: Fixed (:: core :: concat ! (:: core :: module_path ! () , \"::\" , \"f\"))"
        ));
        assert!(out.contains("l1_ttl : :: core :: option :: Option :: Some (:: tiered :: __private :: Duration :: from_millis (1000))"));
        assert!(out.contains("l2_ttl : :: core :: option :: Option :: Some (:: tiered :: __private :: Duration :: from_millis (600000))"));
        assert!(out.contains("__TIERED_SITE . get ()"));
        assert!(out.contains("pub async fn invalidate_all_f () ->"));
    }

    #[test]
    fn integer_bool_char_and_string_arguments_key_l1_as_a_tuple_and_any_other_through_key_args() {
        let out = expansion(
            quote!(),
            quote!(
                async fn f(id: u64, name: &str, tag: String, flag: &bool, c: char) -> u8 {
                    1
                }
            ),
        );
        assert!(out.contains(
            "Parts ((id , :: core :: convert :: AsRef :: < str > :: as_ref (& name) , \
             :: core :: convert :: AsRef :: < str > :: as_ref (& tag) , * flag , c ,))"
        ));
        assert!(out.contains(
            "Site < u8 , (u64 , :: std :: string :: String , :: std :: string :: String , bool , char ,) , u8 >"
        ));

        for args in [
            quote!(x: f64),
            quote!(id: Option<u64>),
            quote!(id: UserId),
            quote!(a: u8, b: u8, c: u8, d: u8, e: u8, f: u8, g: u8, h: u8, i: u8),
        ] {
            let out = expansion(quote!(), quote!(async fn f(#args) -> u8 { 1 }));
            assert!(
                out.contains("Site < u8 , :: tiered :: __private :: AnyKey , u8 >"),
                "{args}"
            );
        }
        let out = expansion(
            quote!(key = "id"),
            quote!(
                async fn f(id: u64) -> u8 {
                    1
                }
            ),
        );
        assert!(out.contains(":: tiered :: __private :: key (& (id))"));
        assert!(out.contains("AnyKey"));
        let out = expansion(
            quote!(),
            quote!(
                async fn f(id: UserId, tag: &Option<u8>) -> u8 {
                    1
                }
            ),
        );
        assert!(out.contains(
            "let tag = & * tag ; :: tiered :: __private :: key_arguments (& (id , tag ,)) ; \
             (& :: tiered :: __private :: KeyArgs ((id , tag ,))) . form ()"
        ));
    }

    #[test]
    fn typed_keys_are_the_ones_the_runtime_takes() {
        assert_eq!(SCALARS.as_slice(), tiered_runtime::__private::SCALAR_PARTS);
        assert_eq!(MAX_PARTS, tiered_runtime::__private::MAX_PARTS);
    }

    #[test]
    fn expect_becomes_allow_and_the_rest_is_kept() {
        let attrs: Vec<Attribute> = vec![
            parse_quote!(#[expect(unused_variables, reason = "x")]),
            parse_quote!(#[deny(missing_docs)]),
            parse_quote!(#[doc = " docs"]),
        ];
        let relaxed: Vec<String> = attrs
            .iter()
            .map(|a| relax(a).to_token_stream().to_string())
            .collect();
        assert_eq!(relaxed[0], "# [allow (unused_variables , reason = \"x\")]");
        assert_eq!(relaxed[1], "# [deny (missing_docs)]");
        assert_eq!(relaxed[2], "# [doc = \" docs\"]");
        assert_eq!(attrs.iter().filter(|a| is_lint(a)).count(), 2);
    }
}
