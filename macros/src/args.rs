//! The attribute's arguments as written: known options, each at most once, each with a literal of the right kind.

use darling::ast::NestedMeta;
use darling::error::Accumulator;
use darling::Error;
use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::{Expr, Lit, LitBool, LitFloat, LitInt, LitStr, Meta};

/// An option of the attribute. Every property of an option is an exhaustive `match` here, so
/// an option added without its name, example or field does not compile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opt {
    Backend,
    OnFailure,
    Ttl,
    L1Ttl,
    L2Ttl,
    L1Capacity,
    Name,
    Version,
    Key,
    Write,
    FailSafe,
    FailSafeThrottle,
    Timeout,
    HardTimeout,
    EagerRefresh,
    CacheNone,
    Tags,
    Stampede,
}

impl Opt {
    /// Every option, in the order the docs list them.
    const ALL: [Opt; 18] = [
        Opt::Backend,
        Opt::OnFailure,
        Opt::Ttl,
        Opt::L1Ttl,
        Opt::L2Ttl,
        Opt::L1Capacity,
        Opt::Name,
        Opt::Version,
        Opt::Key,
        Opt::Write,
        Opt::FailSafe,
        Opt::FailSafeThrottle,
        Opt::Timeout,
        Opt::HardTimeout,
        Opt::EagerRefresh,
        Opt::CacheNone,
        Opt::Tags,
        Opt::Stampede,
    ];

    fn name(self) -> &'static str {
        match self {
            Opt::Backend => "backend",
            Opt::OnFailure => "on_failure",
            Opt::Ttl => "ttl",
            Opt::L1Ttl => "l1_ttl",
            Opt::L2Ttl => "l2_ttl",
            Opt::L1Capacity => "l1_capacity",
            Opt::Name => "name",
            Opt::Version => "version",
            Opt::Key => "key",
            Opt::Write => "write",
            Opt::FailSafe => "fail_safe",
            Opt::FailSafeThrottle => "fail_safe_throttle",
            Opt::Timeout => "timeout",
            Opt::HardTimeout => "hard_timeout",
            Opt::EagerRefresh => "eager_refresh",
            Opt::CacheNone => "cache_none",
            Opt::Tags => "tags",
            Opt::Stampede => "stampede",
        }
    }

    /// A well-formed value, for messages.
    fn example(self) -> &'static str {
        match self {
            Opt::Backend => "\"pg\"",
            Opt::OnFailure => "\"retry(3)\"",
            Opt::Ttl | Opt::L1Ttl | Opt::L2Ttl => "\"30s\"",
            Opt::L1Capacity => "10_000",
            Opt::Name => "\"users::profile\"",
            Opt::Version => "1",
            Opt::Key => "\"(tenant, id)\"",
            Opt::Write => "\"behind\"",
            Opt::FailSafe => "\"1h\"",
            Opt::FailSafeThrottle => "\"30s\"",
            Opt::Timeout => "\"100ms\"",
            Opt::HardTimeout => "\"2s\"",
            Opt::EagerRefresh => "0.8",
            Opt::CacheNone => "false",
            Opt::Tags => "\"[format!(\\\"user:{id}\\\")]\"",
            Opt::Stampede => "\"fleet\"",
        }
    }

    fn list() -> String {
        Opt::ALL.map(Opt::name).join(", ")
    }
}

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
    pub fail_safe: Option<LitStr>,
    pub fail_safe_throttle: Option<LitStr>,
    pub timeout: Option<LitStr>,
    pub hard_timeout: Option<LitStr>,
    pub eager_refresh: Option<LitFloat>,
    pub cache_none: Option<LitBool>,
    pub tags: Option<LitStr>,
    pub stampede: Option<LitStr>,
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
        let mut seen: Vec<Opt> = Vec::new();
        for item in &items {
            let meta = match item {
                NestedMeta::Meta(meta) => meta,
                NestedMeta::Lit(lit) => {
                    errors.push(
                        Error::custom(format!(
                            "expected `option = value`; allowed options: {}",
                            Opt::list()
                        ))
                        .with_span(lit),
                    );
                    continue;
                }
            };
            let path = meta.path();
            let known = path
                .get_ident()
                .and_then(|ident| Opt::ALL.into_iter().find(|option| ident == option.name()));
            let Some(option) = known else {
                let written = path.to_token_stream().to_string().replace(' ', "");
                errors.push(
                    Error::custom(format!(
                        "unknown option `{written}`; allowed options: {}",
                        Opt::list()
                    ))
                    .with_span(path),
                );
                continue;
            };
            if seen.contains(&option) {
                errors.push(
                    Error::custom(format!(
                        "duplicate option `{}`: each option may be given once",
                        option.name()
                    ))
                    .with_span(path),
                );
                continue;
            }
            seen.push(option);
            let Meta::NameValue(name_value) = meta else {
                errors.push(
                    Error::custom(format!(
                        "`{name}` needs a value: `{name} = {}`",
                        option.example(),
                        name = option.name()
                    ))
                    .with_span(meta),
                );
                continue;
            };
            let value = &name_value.value;
            match option {
                Opt::L1Capacity => args.l1_capacity = errors.handle(int(option, value)),
                Opt::Version => args.version = errors.handle(int(option, value)),
                Opt::Backend => args.backend = errors.handle(string(option, value)),
                Opt::OnFailure => args.on_failure = errors.handle(string(option, value)),
                Opt::Ttl => args.ttl = errors.handle(string(option, value)),
                Opt::L1Ttl => args.l1_ttl = errors.handle(string(option, value)),
                Opt::L2Ttl => args.l2_ttl = errors.handle(string(option, value)),
                Opt::Name => args.name = errors.handle(string(option, value)),
                Opt::Key => args.key = errors.handle(string(option, value)),
                Opt::Write => args.write = errors.handle(string(option, value)),
                Opt::FailSafe => args.fail_safe = errors.handle(string(option, value)),
                Opt::FailSafeThrottle => args.fail_safe_throttle = errors.handle(string(option, value)),
                Opt::Timeout => args.timeout = errors.handle(string(option, value)),
                Opt::HardTimeout => args.hard_timeout = errors.handle(string(option, value)),
                Opt::EagerRefresh => args.eager_refresh = errors.handle(float(option, value)),
                Opt::CacheNone => args.cache_none = errors.handle(boolean(option, value)),
                Opt::Tags => args.tags = errors.handle(string(option, value)),
                Opt::Stampede => args.stampede = errors.handle(string(option, value)),
            }
        }
        args
    }
}

/// A string-valued option's literal.
fn string(option: Opt, value: &Expr) -> darling::Result<LitStr> {
    match value {
        Expr::Lit(syn::ExprLit {
            lit: Lit::Str(lit), ..
        }) => Ok(lit.clone()),
        _ => Err(expected(option, "a string", value)),
    }
}

/// An integer-valued option's literal.
fn int(option: Opt, value: &Expr) -> darling::Result<LitInt> {
    match value {
        Expr::Lit(syn::ExprLit {
            lit: Lit::Int(lit), ..
        }) => Ok(lit.clone()),
        _ => Err(expected(option, "an integer", value)),
    }
}

/// A fraction-valued option's literal.
fn float(option: Opt, value: &Expr) -> darling::Result<LitFloat> {
    match value {
        Expr::Lit(syn::ExprLit {
            lit: Lit::Float(lit), ..
        }) => Ok(lit.clone()),
        _ => Err(expected(option, "a decimal", value)),
    }
}

/// A switch's literal.
fn boolean(option: Opt, value: &Expr) -> darling::Result<LitBool> {
    match value {
        Expr::Lit(syn::ExprLit {
            lit: Lit::Bool(lit), ..
        }) => Ok(lit.clone()),
        _ => Err(expected(option, "a `true` or `false`", value)),
    }
}

fn expected(option: Opt, kind: &str, value: &Expr) -> Error {
    Error::custom(format!(
        "`{name}` expects {kind} literal: `{name} = {}`",
        option.example(),
        name = option.name()
    ))
    .with_span(value)
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
    fn every_option_is_listed_once() {
        for (i, option) in Opt::ALL.into_iter().enumerate() {
            assert_eq!(Opt::ALL.iter().position(|o| *o == option), Some(i));
            let (_, errors) = parse(format!("{} = 1", option.name()).parse().unwrap());
            assert!(
                errors.iter().all(|e| !e.contains("unknown option")),
                "{option:?}: {errors:?}"
            );
        }
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
