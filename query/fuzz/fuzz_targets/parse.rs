//! Fuzz target for the PromQL parser: any input must either fail with a
//! `ParseError` or give a tree that prints, re-parses to the same tree and
//! prettifies without panicking.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(expr) = cairn_query::parse(input) {
        let printed = expr.to_string();
        let again = cairn_query::parse(&printed)
            .unwrap_or_else(|e| panic!("{input:?} printed as {printed:?} does not re-parse: {e}"));
        assert_eq!(again, expr, "{input:?} printed as {printed:?}");
        let _ = cairn_query::format::prettify(&expr);
    }
});
