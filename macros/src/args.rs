//! The attribute's arguments as written: known options, each at most once, each with a literal of the right kind.

use darling::ast::NestedMeta;
use darling::error::Accumulator;
use darling::Error;
use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::{Expr, Lit, LitInt, LitStr, Meta};

/// Every option the attribute accepts, in the order the docs list them.
const OPTIONS: &[&str] = &[
    "backend",
    "on_failure",
    "ttl",
    "l1_ttl",
    "l2_ttl",
    "l1_capacity",
    "name",
    "version",
    "key",
    "write",
];

/// `#[tiered_cached(...)]`, parsed but not yet interpreted: `validate` gives each value its meaning.
#[derive(Default)]
pub(crate) struct Args {
    pub backend: Option<LitStr>,
    pub on_failure: Option<LitStr>,
    pub ttl: Option<LitStr>,
    pub l1_ttl: Option<LitStr>,
    pub l2_ttl: Option<LitStr>,
    pub l1_capacity: Option<LitInt>,
    pub name: Option<LitStr>,
    pub version: Option<LitInt>,
    pub key: Option<LitStr>,
    pub write: Option<LitStr>,
}

impl Args {
    /// Reads the tokens between the attribute's parentheses into `errors` and what it could
    /// read. A wrong option does not hide the others, so `validate` checks those too and every
    /// mistake is reported at once (which darling's `FromMeta`, all or nothing, would not allow).
    pub(crate) fn parse(tokens: TokenStream, errors: &mut Accumulator) -> Self {
        let mut args = Args::default();
        let items = match NestedMeta::parse_meta_list(tokens) {
            Ok(items) => items,
            Err(err) => {
                errors.push(err.into());
                return args;
            }
        };
        let mut seen: Vec<&'static str> = Vec::new();
        for item in &items {
            let meta = match item {
                NestedMeta::Meta(meta) => meta,
                NestedMeta::Lit(lit) => {
                    errors.push(
                        Error::custom(format!(
                            "expected `option = value`; allowed options: {}",
                            OPTIONS.join(", ")
                        ))
                        .with_span(lit),
                    );
                    continue;
                }
            };
            let path = meta.path();
            let known = path
                .get_ident()
                .and_then(|ident| OPTIONS.iter().copied().find(|option| ident == option));
            let Some(option) = known else {
                let written = path.to_token_stream().to_string().replace(' ', "");
                errors.push(
                    Error::custom(format!(
                        "unknown option `{written}`; allowed options: {}",
                        OPTIONS.join(", ")
                    ))
                    .with_span(path),
                );
                continue;
            };
            if seen.contains(&option) {
                errors.push(
                    Error::custom(format!(
                        "duplicate option `{option}`: each option may be given once"
                    ))
                    .with_span(path),
                );
                continue;
            }
            seen.push(option);
            let Meta::NameValue(name_value) = meta else {
                errors.push(
                    Error::custom(format!(
                        "`{option}` needs a value: `{option} = {}`",
                        example(option)
                    ))
                    .with_span(meta),
                );
                continue;
            };
            let value = &name_value.value;
            match option {
                "l1_capacity" => args.l1_capacity = errors.handle(int(option, value)),
                "version" => args.version = errors.handle(int(option, value)),
                "backend" => args.backend = errors.handle(string(option, value)),
                "on_failure" => args.on_failure = errors.handle(string(option, value)),
                "ttl" => args.ttl = errors.handle(string(option, value)),
                "l1_ttl" => args.l1_ttl = errors.handle(string(option, value)),
                "l2_ttl" => args.l2_ttl = errors.handle(string(option, value)),
                "name" => args.name = errors.handle(string(option, value)),
                "key" => args.key = errors.handle(string(option, value)),
                _ => args.write = errors.handle(string(option, value)),
            }
        }
        args
    }
}

/// A string-valued option's literal.
fn string(option: &str, value: &Expr) -> darling::Result<LitStr> {
    match value {
        Expr::Lit(syn::ExprLit {
            lit: Lit::Str(lit), ..
        }) => Ok(lit.clone()),
        _ => Err(Error::custom(format!(
            "`{option}` expects a string literal: `{option} = {}`",
            example(option)
        ))
        .with_span(value)),
    }
}

/// An integer-valued option's literal.
fn int(option: &str, value: &Expr) -> darling::Result<LitInt> {
    match value {
        Expr::Lit(syn::ExprLit {
            lit: Lit::Int(lit), ..
        }) => Ok(lit.clone()),
        _ => Err(Error::custom(format!(
            "`{option}` expects an integer literal: `{option} = {}`",
            example(option)
        ))
        .with_span(value)),
    }
}

/// A well-formed value of each option, for messages.
fn example(option: &str) -> &'static str {
    match option {
        "backend" => "\"pg\"",
        "on_failure" => "\"retry(3)\"",
        "ttl" | "l1_ttl" | "l2_ttl" => "\"30s\"",
        "l1_capacity" => "10_000",
        "name" => "\"users::profile\"",
        "version" => "1",
        "key" => "\"(tenant, id)\"",
        _ => "\"behind\"",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn parse(tokens: TokenStream) -> (Args, Vec<String>) {
        let mut errors = Error::accumulator();
        let args = Args::parse(tokens, &mut errors);
        (
            args,
            errors.into_inner().iter().map(ToString::to_string).collect(),
        )
    }

    #[test]
    fn options_are_read_as_written() {
        let (args, errors) = parse(quote!(
            backend = "none",
            ttl = "5m",
            l1_capacity = 10_000,
            version = 2
        ));
        assert!(errors.is_empty());
        assert_eq!(args.backend.unwrap().value(), "none");
        assert_eq!(args.ttl.unwrap().value(), "5m");
        assert_eq!(args.l1_capacity.unwrap().base10_parse::<u64>().unwrap(), 10_000);
        assert!(args.on_failure.is_none());
        assert!(parse(quote!()).1.is_empty());
    }

    #[test]
    fn every_mistake_is_reported() {
        let (args, found) = parse(quote!(
            colour = "red",
            ttl = "1s",
            ttl = "2s",
            version = "1",
            key,
            backend = 1,
            "x"
        ));
        assert_eq!(args.ttl.unwrap().value(), "1s", "what could be read is kept");
        assert_eq!(found.len(), 6, "{found:?}");
        assert!(found[0].starts_with("unknown option `colour`; allowed options: backend, on_failure, ttl"));
        assert!(found[1].starts_with("duplicate option `ttl`"));
        assert!(found[2].starts_with("`version` expects an integer literal"));
        assert!(found[3].starts_with("`key` needs a value: `key = \"(tenant, id)\"`"));
        assert!(found[4].starts_with("`backend` expects a string literal"));
        assert!(found[5].starts_with("expected `option = value`"));
    }
}
