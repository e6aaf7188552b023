//! Every semantic check on the attribute and the function, turning them into a validated `Cached`.

use std::time::Duration;

use darling::Error;
use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{format_ident, ToTokens};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{
    Expr, FnArg, GenericArgument, GenericParam, Ident, ItemFn, LitBool, LitInt, LitStr, Pat, PathArguments,
    Receiver, ReturnType, Token, Type,
};

use crate::args::Args;

/// A function the attribute accepted, with every option's meaning settled.
pub(crate) struct Cached {
    /// The function as written.
    pub item: ItemFn,
    pub settings: Settings,
    /// What the key is made of.
    pub key: Key,
    /// `tags = "…"`: the expression giving an entry's tags, spanned at the literal.
    pub tags: Option<Expr>,
    /// The return type and what of it is cached.
    pub output: Output,
    /// `Some` for a method: the helpers become associated fns of its `impl`.
    pub receiver: Option<Receiver>,
    /// The arguments other than `self`, in order.
    pub args: Vec<Arg>,
}

/// The options that become the runtime's `Spec`.
pub(crate) struct Settings {
    pub backend: Backend,
    pub on_failure: OnFailure,
    pub l1_ttl: Option<Duration>,
    pub l2_ttl: Option<Duration>,
    pub l1_capacity: u64,
    /// `name = "…"`; `None`: derived from the module path or the `Self` type.
    pub name: Option<LitStr>,
    pub version: u32,
    pub write: Write,
    /// `fail_safe` and its throttle (`fail_safe_throttle`, default [`DEFAULT_THROTTLE`]).
    pub fail_safe: Option<(Duration, Duration)>,
    pub timeout: Option<Duration>,
    pub hard_timeout: Option<Duration>,
    pub eager_refresh: Option<f64>,
    /// `cache_none`: whether a `None` is stored.
    pub cache_none: bool,
    /// `stampede = "fleet"`: the lease; `None`: `"process"`.
    pub fleet_lease: Option<Duration>,
}

/// How long a stale value answers for a failing body before the body is tried again, unless
/// `fail_safe_throttle` says otherwise.
const DEFAULT_THROTTLE: Duration = Duration::from_secs(30);

/// How long other processes wait for the one computing a key under `stampede = "fleet"`,
/// unless `fleet(<duration>)` says otherwise.
const DEFAULT_LEASE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Pg,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnFailure {
    L1Only,
    Error,
    Retry(u8),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Write {
    Through,
    Behind,
}

/// What identifies an entry.
pub(crate) enum Key {
    /// All arguments except `self`; the span is the argument list's.
    Arguments(Span),
    /// `key = "…"`: the expression, spanned at the literal, and whether it uses `self`.
    Custom { expr: Expr, uses_self: bool },
}

/// The function's return type.
pub(crate) struct Output {
    /// The return type as written (`()` when there is none).
    pub returned: Type,
    /// `Result<V, E>` (only `Ok` is cached) or a plain value.
    pub is_result: bool,
    /// `V`: the cached type.
    pub value: Type,
    /// Where `V` is written (the `fn`'s name when there is no return type): its bounds errors go there.
    pub value_span: Span,
    /// Where `E` of `Result<V, E>` is written (the `Result` when it is an alias like `io::Result<V>`).
    pub error_span: Span,
}

/// One argument of the generated functions.
pub(crate) struct Arg {
    /// The pattern's identifier without `mut`/`ref`, or `__tiered_argN` for other patterns.
    pub ident: Ident,
    pub ty: Type,
}

/// What the errors say about durations.
const DURATION_FORMAT: &str =
    "expected `<integer><unit>` with unit `ms`, `s`, `m`, `h` or `d`, e.g. \"250ms\", \"30s\", \"5m\", \"2h\", \"1d\"";

/// Parses and checks the attribute's arguments and the item, collecting every error before giving up.
pub(crate) fn validate(args: TokenStream, item: TokenStream) -> darling::Result<Cached> {
    let mut errors = Error::accumulator();
    let args = Args::parse(args, &mut errors);
    let item = errors.handle(syn::parse2::<ItemFn>(item).map_err(|err| {
        error_at(
            err.span(),
            format!(
                "#[tiered_cached] applies to an `async fn` (a free fn, or a method with a receiver in an \
                 inherent impl): {err}"
            ),
        )
    }));
    let Some(item) = item else {
        return Err(Error::multiple(errors.into_inner()));
    };
    let settings = errors.handle(settings(&args));
    let sig = &item.sig;

    if sig.asyncness.is_none() {
        errors.push(
            Error::custom(
                "#[tiered_cached] caches `async fn`s only: make this fn `async` (callers then `.await` it)",
            )
            .with_span(&sig.fn_token),
        );
    }
    if let Some(unsafety) = &sig.unsafety {
        errors.push(
            Error::custom("#[tiered_cached] does not cache an `unsafe fn`: cache a safe fn that wraps it")
                .with_span(unsafety),
        );
    }
    for param in &sig.generics.params {
        if !matches!(param, GenericParam::Lifetime(_)) {
            errors.push(Error::custom(GENERIC).with_span(param));
        }
    }

    let mut receiver = None;
    let mut arguments = Vec::new();
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(r) => receiver = Some(r.clone()),
            FnArg::Typed(typed) => {
                if let Some(attr) = typed
                    .attrs
                    .iter()
                    .find(|a| a.path().is_ident("cfg") || a.path().is_ident("cfg_attr"))
                {
                    errors.push(
                        Error::custom("#[tiered_cached] does not support `cfg` on arguments: the key and the helpers take every argument")
                            .with_span(attr),
                    );
                }
                if let Some(span) = impl_trait(&typed.ty) {
                    errors.push(error_at(
                        span,
                        format!("`impl Trait` in argument position is a generic parameter: {GENERIC}"),
                    ));
                }
                let ident = match &*typed.pat {
                    Pat::Ident(pat) if pat.subpat.is_none() => pat.ident.clone(),
                    pattern => {
                        let at = Span::call_site().located_at(pattern.span());
                        format_ident!("__tiered_arg{}", arguments.len(), span = at)
                    }
                };
                arguments.push(Arg {
                    ident,
                    ty: (*typed.ty).clone(),
                });
            }
        }
    }

    let output = errors.handle(output(&item));
    if let (Some(output), Some(_)) = (&output, &receiver) {
        if let Some(span) = find_ident(output.returned.to_token_stream(), "Self") {
            errors.push(error_at(
                span,
                "the return type cannot be written with `Self`: the cache is a `static`, which cannot refer \
                 to `Self`; write the type's name instead",
            ));
        }
    }
    if receiver.is_none() {
        let signature = sig
            .inputs
            .to_token_stream()
            .into_iter()
            .chain(sig.output.to_token_stream());
        if let Some(span) = find_ident(signature.collect(), "Self") {
            errors.push(error_at(
                span,
                "#[tiered_cached] supports methods with a receiver (`&self`, ...) and free fns, not associated \
                 fns without a receiver: move this fn out of the `impl`, or give it a receiver",
            ));
        }
    }
    if let (Some(settings), Some(output)) = (&settings, &output) {
        if settings.on_failure == OnFailure::Error && !output.is_result {
            let span = args
                .on_failure
                .as_ref()
                .map_or_else(Span::call_site, LitStr::span);
            errors.push(error_at(
                span,
                "on_failure = \"error\" hands backend errors to the caller, so the fn must return `Result<T, E>` \
                 with `E: From<tiered::BackendError>`; this fn does not return a `Result`",
            ));
        }
    }
    if let (Some(lit), Some(output)) = (&args.hard_timeout, &output) {
        if !output.is_result {
            errors.push(
                Error::custom(
                    "`hard_timeout` ends a caller's wait with `Err(E::from(tiered::TimedOut))`, so the fn must \
                     return `Result<T, E>` with `E: From<tiered::TimedOut>`; this fn does not return a `Result`",
                )
                .with_span(lit),
            );
        }
    }
    if let (Some(lit), Some(output)) = (&args.cache_none, &output) {
        if !is_option(&output.value) {
            errors.push(
                Error::custom(
                    "`cache_none` is for fns returning `Option<T>` (or `Result<Option<T>, E>`): their `None` is \
                     returned but not stored; this fn's cached type is not an `Option`",
                )
                .with_span(lit),
            );
        }
    }
    // These run the body in a task of its own, which cannot borrow from the caller.
    let detached = [("timeout", &args.timeout), ("hard_timeout", &args.hard_timeout)]
        .into_iter()
        .find_map(|(option, lit)| lit.as_ref().map(|_| option))
        .or(args.eager_refresh.as_ref().map(|_| "eager_refresh"));
    if let Some(option) = detached {
        if let Some(receiver) = receiver.as_ref().filter(|receiver| borrows(&receiver.ty)) {
            errors.push(
                Error::custom(format!(
                    "`{option}` runs the fn's body in a task of its own, which cannot borrow `self`: take \
                     `self: Arc<Self>` (or `self` by value) instead"
                ))
                .with_span(receiver),
            );
        }
        for arg in arguments.iter().filter(|arg| borrows(&arg.ty)) {
            errors.push(
                Error::custom(format!(
                    "`{option}` runs the fn's body in a task of its own, which cannot borrow its arguments: take \
                     this one owned (e.g. `String` for `&str`)"
                ))
                .with_span(&arg.ty),
            );
        }
    }
    let key = match &args.key {
        None => Some(Key::Arguments(sig.paren_token.span.join())),
        Some(lit) => errors.handle(custom_key(lit)),
    };
    let tags = args.tags.as_ref().and_then(|lit| {
        errors.handle(lit.parse::<Expr>().map_err(|err| {
            Error::custom(format!(
                "`tags` must be a Rust expression over the arguments giving anything iterable of strings, \
                 e.g. tags = \"[format!(\\\"user:{{id}}\\\")]\": {err}"
            ))
            .with_span(lit)
        }))
    });

    errors.finish()?;
    let (Some(settings), Some(output), Some(key)) = (settings, output, key) else {
        unreachable!("every `None` above comes with an error");
    };
    Ok(Cached {
        item,
        settings,
        key,
        tags,
        output,
        receiver,
        args: arguments,
    })
}

/// Why generic fns are rejected, and what to do instead.
const GENERIC: &str = "#[tiered_cached] cannot cache a generic fn: its cache is a `static`, and statics cannot use \
                       generic parameters; make the fn non-generic or wrap it (a cached non-generic fn that calls \
                       the generic one). Lifetime parameters are fine";

/// The options' values, each checked on its own and against the others.
fn settings(args: &Args) -> darling::Result<Settings> {
    let mut errors = Error::accumulator();
    let backend = match &args.backend {
        None => Some(Backend::Pg),
        Some(lit) => errors.handle(backend(lit)),
    };
    let on_failure = match &args.on_failure {
        None => Some(OnFailure::L1Only),
        Some(lit) => errors.handle(on_failure(lit)),
    };
    let write = match &args.write {
        None => Some(Write::Through),
        Some(lit) => errors.handle(write(lit)),
    };
    let mut ttl =
        |lit: &Option<LitStr>, option| lit.as_ref().and_then(|lit| errors.handle(duration(option, lit)));
    let (default_ttl, l1_ttl, l2_ttl) = (
        ttl(&args.ttl, "ttl"),
        ttl(&args.l1_ttl, "l1_ttl"),
        ttl(&args.l2_ttl, "l2_ttl"),
    );
    let l1_capacity = match &args.l1_capacity {
        None => Some(10_000),
        Some(lit) => errors.handle(l1_capacity(lit)),
    };
    let version = match &args.version {
        None => Some(0),
        Some(lit) => errors.handle(lit.base10_parse::<u32>().map_err(|_| {
            Error::custom("`version` must be an integer from 0 to 4294967295 (a u32)").with_span(lit)
        })),
    };
    if let Some(lit) = args.name.as_ref().filter(|lit| lit.value().trim().is_empty()) {
        errors.push(
            Error::custom("`name` must not be empty: it names the cache in L2 and in stats").with_span(lit),
        );
    }
    if let Some(lit) = args.name.as_ref().filter(|lit| lit.value().starts_with('#')) {
        errors.push(
            Error::custom("`name` must not start with `#`: L2 keeps tags under such names").with_span(lit),
        );
    }
    let fleet_lease = args
        .stampede
        .as_ref()
        .and_then(|lit| errors.handle(stampede(lit)))
        .flatten();
    if backend == Some(Backend::None) {
        if let Some(lit) = args.stampede.as_ref().filter(|_| fleet_lease.is_some()) {
            errors.push(
                Error::custom(
                    "stampede = \"fleet\" has other processes wait for a value through L2, but backend = \"none\" \
                     has no L2: remove `stampede` or use backend = \"pg\"",
                )
                .with_span(lit),
            );
        }
        if let Some(lit) = args.write.as_ref().filter(|_| write == Some(Write::Behind)) {
            errors.push(
                Error::custom(
                    "write = \"behind\" defers the L2 write, but backend = \"none\" has no L2: there is nothing \
                     to write behind; remove `write` or use backend = \"pg\"",
                )
                .with_span(lit),
            );
        }
        if let Some(lit) = &args.l2_ttl {
            errors.push(
                Error::custom("`l2_ttl` sets the lifetime of L2 entries, but backend = \"none\" has no L2: use `ttl` or `l1_ttl`")
                    .with_span(lit),
            );
        }
    }
    let (l1_ttl, l2_ttl) = (l1_ttl.or(default_ttl), l2_ttl.or(default_ttl));
    let expires = l1_ttl.is_some() || l2_ttl.is_some();
    let resilience = resilience(args, expires);
    errors.handle(resilience.as_ref().map(|_| ()).map_err(Clone::clone));
    errors.finish()?;
    let (Some(backend), Some(on_failure), Some(write), Some(l1_capacity), Some(version), Ok(resilience)) =
        (backend, on_failure, write, l1_capacity, version, resilience)
    else {
        unreachable!("every `None` above comes with an error");
    };
    let Resilience {
        fail_safe,
        timeout,
        hard_timeout,
        eager_refresh,
    } = resilience;
    Ok(Settings {
        backend,
        on_failure,
        l1_ttl,
        l2_ttl,
        l1_capacity,
        name: args.name.clone(),
        version,
        write,
        fail_safe,
        timeout,
        hard_timeout,
        eager_refresh,
        cache_none: args.cache_none.as_ref().is_none_or(LitBool::value),
        fleet_lease,
    })
}

/// `fail_safe`, the timeouts and `eager_refresh`, checked together.
struct Resilience {
    fail_safe: Option<(Duration, Duration)>,
    timeout: Option<Duration>,
    hard_timeout: Option<Duration>,
    eager_refresh: Option<f64>,
}

/// The options about failing and slow bodies; `expires`: whether the fn has a TTL.
fn resilience(args: &Args, expires: bool) -> darling::Result<Resilience> {
    let mut errors = Error::accumulator();
    let mut parsed =
        |lit: &Option<LitStr>, option| lit.as_ref().and_then(|lit| errors.handle(duration(option, lit)));
    let window = parsed(&args.fail_safe, "fail_safe");
    let throttle = parsed(&args.fail_safe_throttle, "fail_safe_throttle");
    let timeout = parsed(&args.timeout, "timeout");
    let hard_timeout = parsed(&args.hard_timeout, "hard_timeout");
    if let Some(lit) = args.fail_safe.as_ref().filter(|_| !expires) {
        errors.push(
            Error::custom(
                "`fail_safe` keeps values this long past their TTL, but this fn's values never expire: set `ttl` \
                 (or `l1_ttl`/`l2_ttl`)",
            )
            .with_span(lit),
        );
    }
    if let Some(lit) = args
        .fail_safe_throttle
        .as_ref()
        .filter(|_| args.fail_safe.is_none())
    {
        errors.push(
            Error::custom("`fail_safe_throttle` sets how long a stale value answers under `fail_safe`: set `fail_safe` too")
                .with_span(lit),
        );
    }
    if let Some(lit) = args.timeout.as_ref().filter(|_| args.fail_safe.is_none()) {
        errors.push(
            Error::custom(
                "`timeout` answers with a stale value when the fn takes longer, so it needs `fail_safe` (how long \
                 past their TTL values may answer); to bound every wait, use `hard_timeout`",
            )
            .with_span(lit),
        );
    }
    if let (Some(soft), Some(hard), Some(lit)) = (timeout, hard_timeout, &args.timeout) {
        if soft >= hard {
            errors.push(
                Error::custom(format!(
                    "`timeout` ({soft:?}) must be shorter than `hard_timeout` ({hard:?}): past the hard timeout \
                     no caller waits"
                ))
                .with_span(lit),
            );
        }
    }
    let eager_refresh = args.eager_refresh.as_ref().and_then(|lit| {
        let fraction = lit.base10_parse::<f64>().ok().filter(|f| *f > 0.0 && *f < 1.0);
        if fraction.is_none() {
            errors.push(
                Error::custom(
                    "`eager_refresh` is the fraction of an entry's TTL after which a hit refreshes it: a decimal \
                     between 0 and 1, e.g. eager_refresh = 0.8",
                )
                .with_span(lit),
            );
        } else if !expires {
            errors.push(
                Error::custom("`eager_refresh` refreshes entries before their TTL, but this fn has none: set `ttl`")
                    .with_span(lit),
            );
        }
        fraction
    });
    errors.finish()?;
    Ok(Resilience {
        fail_safe: window.map(|window| (window, throttle.unwrap_or(DEFAULT_THROTTLE))),
        timeout,
        hard_timeout,
        eager_refresh,
    })
}

/// Whether a type is written as `Option<…>`.
fn is_option(ty: &Type) -> bool {
    match ty {
        Type::Group(group) => is_option(&group.elem),
        Type::Paren(paren) => is_option(&paren.elem),
        Type::Path(path) => path
            .path
            .segments
            .last()
            .is_some_and(|segment| segment.ident == "Option"),
        _ => false,
    }
}

fn stampede(lit: &LitStr) -> darling::Result<Option<Duration>> {
    parse_stampede(&lit.value()).map_err(|message| Error::custom(message).with_span(lit))
}

/// `None` for `"process"`, the lease for `"fleet"` and `"fleet(<duration>)"`.
fn parse_stampede(value: &str) -> Result<Option<Duration>, String> {
    match value {
        "process" => return Ok(None),
        "fleet" => return Ok(Some(DEFAULT_LEASE)),
        _ => {}
    }
    let Some(lease) = value
        .strip_prefix("fleet(")
        .and_then(|rest| rest.strip_suffix(')'))
    else {
        return Err(format!(
            "unknown stampede \"{value}\"; expected \"process\" (each process computes a missing key), \"fleet\" \
             (one process computes it, the others wait for its value up to a lease of {DEFAULT_LEASE:?}) or \
             \"fleet(<duration>)\" (that lease), e.g. \"fleet(30s)\""
        ));
    };
    if lease
        .trim_end_matches(|c: char| c.is_ascii_alphabetic())
        .parse::<u64>()
        == Ok(0)
    {
        return Err(format!(
            "the lease in stampede = \"{value}\" must be longer than zero: it is how long other processes wait \
             for the one computing a key"
        ));
    }
    // Its messages, said of the lease.
    parse_duration("stampede", lease).map(Some).map_err(|message| {
        message.replace(
            &format!("`stampede = \"{lease}\"`"),
            &format!("the lease in `stampede = \"{value}\"`"),
        )
    })
}

fn backend(lit: &LitStr) -> darling::Result<Backend> {
    match lit.value().as_str() {
        "pg" => Ok(Backend::Pg),
        "none" => Ok(Backend::None),
        other => Err(Error::custom(format!(
            "unknown backend \"{other}\"; expected \"pg\" (L1 + the PostgreSQL L2) or \"none\" (L1 only)"
        ))
        .with_span(lit)),
    }
}

fn write(lit: &LitStr) -> darling::Result<Write> {
    match lit.value().as_str() {
        "through" => Ok(Write::Through),
        "behind" => Ok(Write::Behind),
        other => Err(Error::custom(format!(
            "unknown write mode \"{other}\"; expected \"through\" (write L2 before returning) or \"behind\" (write L2 in the background)"
        ))
        .with_span(lit)),
    }
}

fn on_failure(lit: &LitStr) -> darling::Result<OnFailure> {
    parse_on_failure(&lit.value()).map_err(|message| Error::custom(message).with_span(lit))
}

fn parse_on_failure(value: &str) -> Result<OnFailure, String> {
    match value {
        "l1_only" => return Ok(OnFailure::L1Only),
        "error" => return Ok(OnFailure::Error),
        _ => {}
    }
    let Some(n) = value
        .strip_prefix("retry(")
        .and_then(|rest| rest.strip_suffix(')'))
        .map(str::trim)
    else {
        return Err(format!(
            "unknown on_failure \"{value}\"; expected \"l1_only\", \"error\" or \"retry(N)\" with 1 ≤ N ≤ 255"
        ));
    };
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "in \"retry(N)\", N must be an integer (the total number of attempts, 1 ≤ N ≤ 255), not `{n}`"
        ));
    }
    match n.parse::<u8>() {
        Ok(attempts) if attempts >= 1 => Ok(OnFailure::Retry(attempts)),
        _ => Err(format!(
            "in \"retry(N)\", N is the total number of attempts and must be 1 ≤ N ≤ 255, not {n}"
        )),
    }
}

fn duration(option: &str, lit: &LitStr) -> darling::Result<Duration> {
    parse_duration(option, &lit.value()).map_err(|message| Error::custom(message).with_span(lit))
}

fn parse_duration(option: &str, value: &str) -> Result<Duration, String> {
    let digits = value.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = value.split_at(digits);
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => 0,
    };
    if number.is_empty() || millis_per_unit == 0 {
        return Err(format!(
            "`{option} = \"{value}\"` is not a duration: {DURATION_FORMAT}"
        ));
    }
    let millis = number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(millis_per_unit));
    match millis {
        Some(0) => Err(format!(
            "`{option}` must be longer than zero (leave it out for entries that never expire); {DURATION_FORMAT}"
        )),
        Some(millis) => Ok(Duration::from_millis(millis)),
        None => Err(format!("`{option} = \"{value}\"` is too long: at most {} ms", u64::MAX)),
    }
}

fn l1_capacity(lit: &LitInt) -> darling::Result<u64> {
    let message = match lit.base10_parse::<u64>() {
        Ok(0) => "`l1_capacity` is the most entries kept in L1: it must be at least 1",
        Ok(capacity) => return Ok(capacity),
        Err(_) => {
            "`l1_capacity` is the most entries kept in L1: it must be from 1 to 18446744073709551615 (a u64)"
        }
    };
    Err(Error::custom(message).with_span(lit))
}

/// `key = "…"`: an expression over the arguments, spanned at the literal.
fn custom_key(lit: &LitStr) -> darling::Result<Key> {
    let expr = lit.parse::<Expr>().map_err(|err| {
        let several = lit
            .parse_with(Punctuated::<Expr, Token![,]>::parse_terminated)
            .is_ok_and(|list| list.len() > 1);
        let message = if several {
            format!(
                "`key` must be one Rust expression: to key by several values, make a tuple: key = \"({})\"",
                lit.value()
            )
        } else {
            format!("`key` must be a Rust expression over the arguments, e.g. key = \"(tenant, id)\": {err}")
        };
        Error::custom(message).with_span(lit)
    })?;
    let uses_self = find_ident(expr.to_token_stream(), "self").is_some();
    Ok(Key::Custom { expr, uses_self })
}

/// Where `name` occurs in `tokens`, if anywhere.
fn find_ident(tokens: TokenStream, name: &str) -> Option<Span> {
    tokens.into_iter().find_map(|token| match token {
        TokenTree::Ident(ident) if ident == name => Some(ident.span()),
        TokenTree::Group(group) => find_ident(group.stream(), name),
        _ => None,
    })
}

/// The return type: `Result<V, _>` or a plain `V`, which must be a nameable, owned type.
fn output(item: &ItemFn) -> darling::Result<Output> {
    let (ty, span) = match &item.sig.output {
        ReturnType::Default => (syn::parse_quote!(()), item.sig.ident.span()),
        ReturnType::Type(_, ty) => ((**ty).clone(), ty.span()),
    };
    if let Some(at) = impl_trait(&ty) {
        return Err(error_at(
            at,
            "#[tiered_cached] cannot cache an `impl Trait` return type: the cache stores values of one \
             nameable type; return a concrete type (e.g. `Vec<T>` rather than `impl Iterator`)",
        ));
    }
    let (is_result, value, value_span, error_span) = match result_types(&ty) {
        Some((value, error)) => (
            true,
            value.clone(),
            value.span(),
            error.map_or(span, Spanned::span),
        ),
        None => (false, ty.clone(), span, span),
    };
    if let Some(at) = borrowed(&value) {
        return Err(error_at(
            at,
            "a cached value outlives the call that computed it, so its type cannot borrow: return an owned \
             type (e.g. `String` rather than `&str`, or `Arc<T>`)",
        ));
    }
    Ok(Output {
        returned: ty,
        is_result,
        value,
        value_span,
        error_span,
    })
}

/// Strips parentheses and the invisible groups of `macro_rules!` `$t:ty` fragments.
fn peel(ty: &Type) -> &Type {
    match ty {
        Type::Paren(inner) => peel(&inner.elem),
        Type::Group(inner) => peel(&inner.elem),
        _ => ty,
    }
}

/// `V` (and `E`, if written) of a `…::Result<V, …>`: the last path segment is `Result` with a type as
/// first generic argument.
fn result_types(ty: &Type) -> Option<(&Type, Option<&Type>)> {
    let Type::Path(path) = peel(ty) else { return None };
    let last = path.path.segments.last()?;
    let PathArguments::AngleBracketed(generics) = &last.arguments else {
        return None;
    };
    let mut types = generics.args.iter().filter_map(|arg| match arg {
        GenericArgument::Type(ty) => Some(ty),
        _ => None,
    });
    match generics.args.first()? {
        GenericArgument::Type(_) if last.ident == "Result" => Some((types.next()?, types.next())),
        _ => None,
    }
}

/// Where `impl Trait` occurs in a type, if anywhere.
fn impl_trait(ty: &Type) -> Option<Span> {
    find_ident(ty.to_token_stream(), "impl")
}

/// An error at a span rather than at a syntax node.
fn error_at(span: Span, message: impl std::fmt::Display) -> Error {
    syn::Error::new(span, message).into()
}

/// Where a type borrows (a reference or a lifetime other than `'static`), if it does.
fn borrowed(ty: &Type) -> Option<Span> {
    match ty {
        Type::Reference(reference) => match &reference.lifetime {
            Some(lifetime) if lifetime.ident == "static" => borrowed(&reference.elem),
            _ => Some(reference.span()),
        },
        Type::Path(path) => {
            let qself = path.qself.as_ref().and_then(|qself| borrowed(&qself.ty));
            qself.or_else(|| {
                path.path
                    .segments
                    .iter()
                    .find_map(|segment| match &segment.arguments {
                        PathArguments::AngleBracketed(generics) => {
                            generics.args.iter().find_map(|arg| match arg {
                                GenericArgument::Lifetime(lifetime) if lifetime.ident != "static" => {
                                    Some(lifetime.span())
                                }
                                GenericArgument::Type(ty) => borrowed(ty),
                                _ => None,
                            })
                        }
                        _ => None,
                    })
            })
        }
        Type::Tuple(tuple) => tuple.elems.iter().find_map(borrowed),
        Type::Array(array) => borrowed(&array.elem),
        Type::Slice(slice) => borrowed(&slice.elem),
        Type::Paren(inner) => borrowed(&inner.elem),
        Type::Group(inner) => borrowed(&inner.elem),
        _ => None,
    }
}

/// Whether a type holds a reference or a lifetime anywhere.
pub(crate) fn borrows(ty: &Type) -> bool {
    use quote::ToTokens;
    fn any(tokens: TokenStream) -> bool {
        tokens.into_iter().any(|token| match token {
            proc_macro2::TokenTree::Punct(punct) => matches!(punct.as_char(), '&' | '\''),
            proc_macro2::TokenTree::Group(group) => any(group.stream()),
            _ => false,
        })
    }
    any(ty.to_token_stream())
}

#[cfg(test)]
mod tests {
    use super::*;
    use syn::parse_quote;

    fn ms(n: u64) -> Result<Duration, String> {
        Ok(Duration::from_millis(n))
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("ttl", "250ms"), ms(250));
        assert_eq!(parse_duration("ttl", "30s"), ms(30_000));
        assert_eq!(parse_duration("ttl", "5m"), ms(300_000));
        assert_eq!(parse_duration("ttl", "2h"), ms(7_200_000));
        assert_eq!(parse_duration("ttl", "1d"), ms(86_400_000));
        for bad in ["5 parsecs", "5", "s", "", "5 s", "-5s", "1.5h", "5S", "5min"] {
            let err = parse_duration("ttl", bad).unwrap_err();
            assert!(
                err.contains("is not a duration") && err.contains("`ms`, `s`, `m`, `h` or `d`"),
                "{bad}: {err}"
            );
        }
        assert!(parse_duration("l1_ttl", "0s")
            .unwrap_err()
            .starts_with("`l1_ttl` must be longer than zero"));
        assert!(parse_duration("ttl", "99999999999999999999d")
            .unwrap_err()
            .contains("too long"));
    }

    #[test]
    fn stampede_modes() {
        assert_eq!(parse_stampede("process"), Ok(None));
        assert_eq!(parse_stampede("fleet"), Ok(Some(DEFAULT_LEASE)));
        assert_eq!(parse_stampede("fleet(250ms)"), ms(250).map(Some));
        for unknown in ["Fleet", "fleet()", "fleet(5s", "cluster", ""] {
            let err = parse_stampede(unknown).unwrap_err();
            assert!(
                err.contains("unknown stampede") || err.contains("is not a duration"),
                "{unknown}: {err}"
            );
        }
        assert!(parse_stampede("fleet(0s)")
            .unwrap_err()
            .contains("must be longer than zero"));
        assert!(parse_stampede("fleet(5 parsecs)")
            .unwrap_err()
            .starts_with("the lease in `stampede = \"fleet(5 parsecs)\"` is not a duration: expected"));
        assert!(parse_stampede("fleet(99999999999999999999d)")
            .unwrap_err()
            .contains("is too long"));
    }

    #[test]
    fn failure_modes() {
        assert_eq!(parse_on_failure("l1_only"), Ok(OnFailure::L1Only));
        assert_eq!(parse_on_failure("error"), Ok(OnFailure::Error));
        assert_eq!(parse_on_failure("retry(1)"), Ok(OnFailure::Retry(1)));
        assert_eq!(parse_on_failure("retry(255)"), Ok(OnFailure::Retry(255)));
        for range in ["retry(0)", "retry(256)", "retry(99999999999999999999999)"] {
            assert!(
                parse_on_failure(range)
                    .unwrap_err()
                    .contains("must be 1 ≤ N ≤ 255"),
                "{range}"
            );
        }
        for nan in ["retry(x)", "retry()", "retry(-1)", "retry(2.5)"] {
            assert!(
                parse_on_failure(nan)
                    .unwrap_err()
                    .contains("N must be an integer"),
                "{nan}"
            );
        }
        for unknown in ["retry", "l1only", "Error", ""] {
            let err = parse_on_failure(unknown).unwrap_err();
            assert!(
                err.contains("\"l1_only\", \"error\" or \"retry(N)\""),
                "{unknown}: {err}"
            );
        }
    }

    #[test]
    fn return_types() {
        let ok = |ty: Type| result_types(&ty).map(|(v, _)| v.to_token_stream().to_string());
        assert_eq!(
            ok(parse_quote!(Result<Profile, AppError>)).as_deref(),
            Some("Profile")
        );
        assert_eq!(
            ok(parse_quote!(io::Result<Vec<u8>>)).as_deref(),
            Some("Vec < u8 >")
        );
        assert_eq!(ok(parse_quote!(::anyhow::Result<()>)).as_deref(), Some("()"));
        assert_eq!(ok(parse_quote!((Result<u8, E>))).as_deref(), Some("u8"));
        assert_eq!(ok(parse_quote!(Option<u8>)), None);
        assert_eq!(ok(parse_quote!(Result)), None);
        assert_eq!(ok(parse_quote!(MyResult<u8>)), None);
        assert!(impl_trait(&parse_quote!(Vec<impl Display>)).is_some());
        assert!(impl_trait(&parse_quote!(Vec<u8>)).is_none());
        assert!(borrowed(&parse_quote!(&str)).is_some());
        assert!(borrowed(&parse_quote!(Cow<'a, str>)).is_some());
        assert!(borrowed(&parse_quote!(Vec<(u8, &'a [u8])>)).is_some());
        assert!(borrowed(&parse_quote!(&'static str)).is_none());
        assert!(borrowed(&parse_quote!(Arc<dyn Fn(&u8) + Send + Sync>)).is_none());
    }
}
