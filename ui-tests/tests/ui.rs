//! Compile-time behaviour of `#[tiered_cached]`: every rejected input has its own spanned
//! message (`tests/ui/fail`), and every accepted shape compiles warning-free and runs
//! (`tests/ui/pass`).

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/fail/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
