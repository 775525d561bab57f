//! cairn-query: PromQL for Cairn.
//!
//! A query string is parsed into a typed AST, checked, and evaluated over
//! storage that is reached only through `cairn_engine::Querier`.

pub mod ast;
pub mod error;
pub mod eval;
pub mod format;
pub mod functions;
pub mod parser;
pub mod promqltest;

pub use ast::{Expr, ValueType};
pub use error::{Error, Result};
pub use eval::{Engine, EngineOptions, QueryOptions, QueryResult, Value};
pub use parser::{ParseError, ParseOptions, parse, parse_with};
