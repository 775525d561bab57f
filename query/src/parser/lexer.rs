//! The PromQL lexer: query text to tokens with byte positions.
//!
//! Lexing is context-sensitive in the same three states as Prometheus's
//! lexer: ordinary expression text, the inside of `{...}` (label names are
//! plain identifiers, keywords are not recognised) and the inside of `[...]`
//! (numbers, durations and `:`). Tokens are produced in one linear pass; a
//! lexical error becomes an [`TokKind::Error`] token at the place it occurs,
//! so the parser reports whichever error comes first in the text. The small
//! recognisers (identifiers, durations, whitespace and comments) are nom
//! parsers over `&str`.

use nom::IResult;
use nom::Parser;
use nom::bytes::complete::{take_while, take_while1};
use nom::character::complete::{char, digit1, one_of};
use nom::combinator::{opt, recognize};
use nom::multi::many1_count;
use nom::sequence::pair;

use crate::ast::{AggregateOp, BinaryOp};

/// Keywords (matched case-insensitively, like Prometheus).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kw {
    Agg(AggregateOp),
    By,
    Without,
    On,
    Ignoring,
    GroupLeft,
    GroupRight,
    Bool,
    Offset,
    Start,
    End,
    Step,
    Range,
    MaxOf,
    MinOf,
    Anchored,
    Smoothed,
    /// `fill`, `fill_left`, `fill_right`, only when followed by `(`.
    Fill,
}

impl Kw {
    fn lookup(word: &str) -> Option<Kw> {
        let mut buf = [0u8; 16];
        let lower = lowercase(word, &mut buf)?;
        let kw = match lower {
            "sum" => Kw::Agg(AggregateOp::Sum),
            "avg" => Kw::Agg(AggregateOp::Avg),
            "count" => Kw::Agg(AggregateOp::Count),
            "min" => Kw::Agg(AggregateOp::Min),
            "max" => Kw::Agg(AggregateOp::Max),
            "group" => Kw::Agg(AggregateOp::Group),
            "stddev" => Kw::Agg(AggregateOp::Stddev),
            "stdvar" => Kw::Agg(AggregateOp::Stdvar),
            "topk" => Kw::Agg(AggregateOp::Topk),
            "bottomk" => Kw::Agg(AggregateOp::Bottomk),
            "count_values" => Kw::Agg(AggregateOp::CountValues),
            "quantile" => Kw::Agg(AggregateOp::Quantile),
            "limitk" => Kw::Agg(AggregateOp::Limitk),
            "limit_ratio" => Kw::Agg(AggregateOp::LimitRatio),
            "by" => Kw::By,
            "without" => Kw::Without,
            "on" => Kw::On,
            "ignoring" => Kw::Ignoring,
            "group_left" => Kw::GroupLeft,
            "group_right" => Kw::GroupRight,
            "bool" => Kw::Bool,
            "offset" => Kw::Offset,
            "start" => Kw::Start,
            "end" => Kw::End,
            "step" => Kw::Step,
            "range" => Kw::Range,
            "max_of" => Kw::MaxOf,
            "min_of" => Kw::MinOf,
            "anchored" => Kw::Anchored,
            "smoothed" => Kw::Smoothed,
            "fill" | "fill_left" | "fill_right" => Kw::Fill,
            _ => return None,
        };
        Some(kw)
    }
}

/// `word` in ASCII lower case, in `buf`; `None` if longer than any keyword.
fn lowercase<'b>(word: &str, buf: &'b mut [u8; 16]) -> Option<&'b str> {
    let bytes = word.as_bytes();
    let out = buf.get_mut(..bytes.len())?;
    for (o, b) in out.iter_mut().zip(bytes) {
        *o = b.to_ascii_lowercase();
    }
    std::str::from_utf8(out).ok()
}

/// What a token is.
#[derive(Debug, Clone, PartialEq)]
pub enum TokKind {
    Number,
    Duration,
    /// A quoted string, with its quotes (unquoted by the parser).
    Str,
    /// `[a-zA-Z_][a-zA-Z0-9_]*`, not a keyword.
    Ident,
    /// An identifier containing `:` (a recording-rule style metric name).
    MetricIdent,
    Keyword(Kw),
    /// A binary operator, including `and`, `or`, `unless` and `atan2`.
    Op(BinaryOp),
    LParen,
    RParen,
    LBrace,
    RBrace,
    LBracket,
    RBracket,
    Comma,
    Colon,
    At,
    /// `=` (a label matcher).
    Assign,
    /// `=~`.
    EqlRegex,
    /// `!~`.
    NeqRegex,
    Eof,
    /// A lexical error with its message; always the last token.
    Error(String),
}

/// A token and where it is in the input (`start..end` in bytes).
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub kind: TokKind,
    pub start: usize,
    pub end: usize,
}

fn is_alpha(c: char) -> bool {
    c == '_' || c.is_ascii_alphabetic()
}

fn is_alnum(c: char) -> bool {
    is_alpha(c) || c.is_ascii_digit()
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// Whitespace and `#` comments.
fn trivia(s: &str) -> IResult<&str, &str> {
    recognize(nom::multi::many0_count(nom::branch::alt((
        take_while1(is_space),
        recognize(pair(char('#'), take_while(|c| c != '\n' && c != '\r'))),
    ))))
    .parse(s)
}

/// An identifier, with `:` allowed when `colons` is set.
fn identifier(s: &str, colons: bool) -> IResult<&str, &str> {
    recognize(pair(
        take_while1(move |c: char| is_alpha(c) || (colons && c == ':')),
        take_while(move |c: char| is_alnum(c) || (colons && c == ':')),
    ))
    .parse(s)
}

/// The tail of a duration after its first number: `m`, `ms`, `h30m` ...
/// (Prometheus's `acceptRemainingDuration`; the order of units is checked
/// when the value is computed).
fn duration_tail(s: &str) -> IResult<&str, &str> {
    recognize(pair(
        pair(one_of("smhdwy"), opt(char('s'))),
        opt(many1_count(pair(
            digit1,
            pair(one_of("smhdwy"), opt(char('s'))),
        ))),
    ))
    .parse(s)
}

/// The lexer state.
struct Lexer<'a> {
    input: &'a str,
    pos: usize,
    tokens: Vec<Token>,
    paren_depth: usize,
    in_braces: bool,
    in_brackets: bool,
    got_colon: bool,
    got_duration: bool,
}

/// Splits `input` into tokens. The last token is `Eof` or `Error`.
pub fn tokenize(input: &str) -> Vec<Token> {
    let mut lx = Lexer {
        input,
        pos: 0,
        tokens: Vec::with_capacity(input.len() / 3 + 2),
        paren_depth: 0,
        in_braces: false,
        in_brackets: false,
        got_colon: false,
        got_duration: false,
    };
    loop {
        let result = if lx.in_braces {
            lx.inside_braces()
        } else if lx.in_brackets {
            lx.inside_brackets()
        } else {
            lx.statement()
        };
        match result {
            Ok(true) => continue,
            Ok(false) => {
                let end = lx.input.len();
                lx.tokens.push(Token {
                    kind: TokKind::Eof,
                    start: end,
                    end,
                });
                break;
            }
            Err((start, end, msg)) => {
                lx.tokens.push(Token {
                    kind: TokKind::Error(msg),
                    start,
                    end,
                });
                break;
            }
        }
    }
    lx.tokens
}

/// `Ok(true)`: a token (or nothing) was consumed, continue; `Ok(false)`:
/// end of input; `Err`: a lexical error at `start..end`.
type Step = Result<bool, (usize, usize, String)>;

impl<'a> Lexer<'a> {
    fn rest(&self) -> &'a str {
        &self.input[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn emit(&mut self, kind: TokKind, start: usize) {
        self.tokens.push(Token {
            kind,
            start,
            end: self.pos,
        });
    }

    fn skip_trivia(&mut self) {
        if !self.rest().starts_with(|c: char| is_space(c) || c == '#') {
            return;
        }
        if let Ok((rest, _)) = trivia(self.rest()) {
            self.pos = self.input.len() - rest.len();
        }
    }

    fn err<T>(&self, start: usize, msg: String) -> Result<T, (usize, usize, String)> {
        Err((start, self.pos.max(start), msg))
    }

    fn statement(&mut self) -> Step {
        self.skip_trivia();
        let start = self.pos;
        let Some(c) = self.peek() else {
            if self.paren_depth != 0 {
                return self.err(start, "unclosed left parenthesis".into());
            }
            return Ok(false);
        };
        self.pos += c.len_utf8();
        let next = self.peek();
        let kind = match c {
            ',' => TokKind::Comma,
            '*' => TokKind::Op(BinaryOp::Mul),
            '/' => TokKind::Op(BinaryOp::Div),
            '%' => TokKind::Op(BinaryOp::Mod),
            '+' => TokKind::Op(BinaryOp::Add),
            '-' => TokKind::Op(BinaryOp::Sub),
            '^' => TokKind::Op(BinaryOp::Pow),
            '@' => TokKind::At,
            '=' => match next {
                Some('=') => {
                    self.pos += 1;
                    TokKind::Op(BinaryOp::Eql)
                }
                Some('~') => {
                    self.pos += 1;
                    return self.err(start, "unexpected character after '=': '~'".into());
                }
                _ => TokKind::Assign,
            },
            '!' => match next {
                Some('=') => {
                    self.pos += 1;
                    TokKind::Op(BinaryOp::Neq)
                }
                Some(t) => {
                    self.pos += t.len_utf8();
                    return self.err(
                        start,
                        format!("unexpected character after '!': {}", go_quote_char(t)),
                    );
                }
                None => {
                    return self.err(start, "unexpected end of input after '!'".into());
                }
            },
            '<' => match next {
                Some('=') => {
                    self.pos += 1;
                    TokKind::Op(BinaryOp::Lte)
                }
                Some('/') => {
                    self.pos += 1;
                    TokKind::Op(BinaryOp::TrimUpper)
                }
                _ => TokKind::Op(BinaryOp::Lss),
            },
            '>' => match next {
                Some('=') => {
                    self.pos += 1;
                    TokKind::Op(BinaryOp::Gte)
                }
                Some('/') => {
                    self.pos += 1;
                    TokKind::Op(BinaryOp::TrimLower)
                }
                _ => TokKind::Op(BinaryOp::Gtr),
            },
            '0'..='9' => {
                self.pos = start;
                return self.number_or_duration();
            }
            '.' if next.is_some_and(|n| n.is_ascii_digit()) => {
                self.pos = start;
                return self.number_or_duration();
            }
            '"' | '\'' => {
                self.pos = start;
                return self.string();
            }
            '`' => {
                self.pos = start;
                return self.raw_string();
            }
            c if is_alpha(c) || c == ':' => {
                self.pos = start;
                return self.keyword_or_identifier();
            }
            '(' => {
                self.paren_depth += 1;
                TokKind::LParen
            }
            ')' => {
                if self.paren_depth == 0 {
                    return self.err(start, "unexpected right parenthesis ')'".into());
                }
                self.paren_depth -= 1;
                TokKind::RParen
            }
            '{' => {
                self.in_braces = true;
                TokKind::LBrace
            }
            '[' => {
                self.in_brackets = true;
                self.got_colon = false;
                self.got_duration = false;
                TokKind::LBracket
            }
            ']' => return self.err(start, "unexpected right bracket ']'".into()),
            c => {
                return self.err(start, format!("unexpected character: {}", go_quote_char(c)));
            }
        };
        self.emit(kind, start);
        Ok(true)
    }

    fn inside_braces(&mut self) -> Step {
        self.skip_trivia();
        let start = self.pos;
        let Some(c) = self.peek() else {
            return self.err(start, "unexpected end of input inside braces".into());
        };
        self.pos += c.len_utf8();
        let kind = match c {
            c if is_alpha(c) => {
                self.pos = start;
                let (rest, _) = identifier(self.rest(), false).map_err(|_| {
                    (
                        start,
                        start + 1,
                        "unexpected character inside braces".to_string(),
                    )
                })?;
                self.pos = self.input.len() - rest.len();
                TokKind::Ident
            }
            ',' => TokKind::Comma,
            '"' | '\'' => {
                self.pos = start;
                return self.string();
            }
            '`' => {
                self.pos = start;
                return self.raw_string();
            }
            '=' => {
                if self.peek() == Some('~') {
                    self.pos += 1;
                    TokKind::EqlRegex
                } else {
                    TokKind::Assign
                }
            }
            '!' => match self.peek() {
                Some('~') => {
                    self.pos += 1;
                    TokKind::NeqRegex
                }
                Some('=') => {
                    self.pos += 1;
                    TokKind::Op(BinaryOp::Neq)
                }
                Some(t) => {
                    self.pos += t.len_utf8();
                    return self.err(
                        start,
                        format!(
                            "unexpected character after '!' inside braces: {}",
                            go_quote_char(t)
                        ),
                    );
                }
                None => {
                    return self.err(start, "unexpected end of input inside braces".into());
                }
            },
            '{' => return self.err(start, "unexpected left brace '{'".into()),
            '}' => {
                self.in_braces = false;
                TokKind::RBrace
            }
            c => {
                return self.err(
                    start,
                    format!("unexpected character inside braces: {}", go_quote_char(c)),
                );
            }
        };
        self.emit(kind, start);
        Ok(true)
    }

    fn inside_brackets(&mut self) -> Step {
        self.skip_trivia();
        let start = self.pos;
        let Some(c) = self.peek() else {
            return self.err(
                start,
                "unexpected end of input in duration expression".into(),
            );
        };
        self.pos += c.len_utf8();
        let kind = match c {
            ']' => {
                self.in_brackets = false;
                TokKind::RBracket
            }
            ':' => {
                if !self.got_duration {
                    self.emit(TokKind::Colon, start);
                    return self.err(
                        start,
                        "unexpected colon before duration in duration expression".into(),
                    );
                }
                if self.got_colon {
                    self.emit(TokKind::Colon, start);
                    return self.err(
                        start,
                        "unexpected repeated colon in duration expression".into(),
                    );
                }
                self.got_colon = true;
                TokKind::Colon
            }
            '(' => {
                self.paren_depth += 1;
                TokKind::LParen
            }
            ')' => {
                if self.paren_depth == 0 {
                    return self.err(start, "unexpected right parenthesis ')'".into());
                }
                self.paren_depth -= 1;
                TokKind::RParen
            }
            '+' => TokKind::Op(BinaryOp::Add),
            '-' => TokKind::Op(BinaryOp::Sub),
            '*' => TokKind::Op(BinaryOp::Mul),
            '/' => TokKind::Op(BinaryOp::Div),
            '%' => TokKind::Op(BinaryOp::Mod),
            '^' => TokKind::Op(BinaryOp::Pow),
            ',' => TokKind::Comma,
            c if c.is_ascii_digit()
                || (c == '.' && self.peek().is_some_and(|n| n.is_ascii_digit())) =>
            {
                self.pos = start;
                self.got_duration = true;
                return self.number_or_duration();
            }
            c if is_alpha(c) => {
                self.pos = start;
                let (rest, word) = identifier(self.rest(), false).map_err(|_| {
                    (
                        start,
                        start + 1,
                        "unexpected character in duration expression".to_string(),
                    )
                })?;
                let mut buf = [0u8; 16];
                let kw = match lowercase(word, &mut buf).unwrap_or("") {
                    "step" => Kw::Step,
                    "range" => Kw::Range,
                    "max_of" => Kw::MaxOf,
                    "min_of" => Kw::MinOf,
                    _ => {
                        self.pos = start + c.len_utf8();
                        if self.got_duration {
                            return self.err(
                                start,
                                format!("unexpected character: {}, expected ':'", go_quote_char(c)),
                            );
                        }
                        return self.err(
                            start,
                            format!(
                                "unexpected character in duration expression: {}",
                                go_quote_char(c)
                            ),
                        );
                    }
                };
                self.pos = self.input.len() - rest.len();
                TokKind::Keyword(kw)
            }
            c => {
                return self.err(
                    start,
                    format!(
                        "unexpected character in duration expression: {}",
                        go_quote_char(c)
                    ),
                );
            }
        };
        self.emit(kind, start);
        Ok(true)
    }

    /// Prometheus's `scanNumber`: decimal or hex digits with at most one dot
    /// and one exponent, `_` between digits; the number must not be followed
    /// by a letter or digit. Returns whether a number was scanned; on failure
    /// `pos` is where scanning stopped.
    fn scan_number(&mut self) -> bool {
        let b = self.input.as_bytes();
        let initial = self.pos;
        let at = |i: usize| b.get(i).copied();
        let mut hex = false;
        if at(self.pos) == Some(b'0') && matches!(at(self.pos + 1), Some(b'x' | b'X')) {
            self.pos += 2;
            if at(self.pos) == Some(b'_') {
                self.pos += 1;
            }
            hex = true;
        }
        let is_digit = |c: u8| {
            if hex {
                c.is_ascii_hexdigit()
            } else {
                c.is_ascii_digit()
            }
        };
        if at(self.pos) == Some(b'.') {
            self.pos += 1;
        }
        if at(self.pos).is_some_and(is_digit) {
            self.pos += 1;
        }
        let mut dot = false;
        let mut exp = false;
        while let Some(c) = at(self.pos) {
            let is_exp = !hex && (c == b'e' || c == b'E');
            if !(is_digit(c) || c == b'.' || c == b'_' || is_exp) {
                break;
            }
            if c == b'.' {
                self.pos += 1;
                if dot || hex {
                    return false;
                }
                dot = true;
                if matches!(at(self.pos), Some(b'_' | b'.')) {
                    self.pos += 1;
                    return false;
                }
                continue;
            }
            if is_exp {
                self.pos += 1;
                if exp {
                    return false;
                }
                exp = true;
                if matches!(at(self.pos), Some(b'+' | b'-')) {
                    self.pos += 1;
                }
                match at(self.pos) {
                    None => return false,
                    Some(b'.' | b'_' | b'e' | b'E') => {
                        self.pos += 1;
                        return false;
                    }
                    _ => {}
                }
                continue;
            }
            if c == b'_' {
                self.pos += 1;
                match at(self.pos) {
                    None => return false,
                    Some(b'.' | b'_' | b'e' | b'E') => {
                        self.pos += 1;
                        return false;
                    }
                    _ => {}
                }
                continue;
            }
            while at(self.pos).is_some_and(is_digit) {
                self.pos += 1;
            }
        }
        if self.pos == initial {
            return false;
        }
        !self.input[self.pos..].chars().next().is_some_and(is_alnum)
    }

    fn number_or_duration(&mut self) -> Step {
        let start = self.pos;
        if self.scan_number() {
            self.emit(TokKind::Number, start);
            return Ok(true);
        }
        // Not a plain number: a duration is digits followed by units.
        let digits = self.input[start..]
            .bytes()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if digits > 0 {
            let after = &self.input[start + digits..];
            if let Ok((rest, _)) = duration_tail(after) {
                let end = self.input.len() - rest.len();
                if !rest.chars().next().is_some_and(is_alnum) {
                    self.pos = end;
                    self.emit(TokKind::Duration, start);
                    return Ok(true);
                }
                self.pos = end + rest.chars().next().map_or(0, char::len_utf8);
            }
        }
        // Include the character that made the token invalid, as Prometheus does.
        if self.pos <= start {
            self.pos = start + 1;
        }
        let text = &self.input[start..self.pos];
        self.err(
            start,
            format!("bad number or duration syntax: {}", go_quote(text)),
        )
    }

    fn string(&mut self) -> Step {
        let start = self.pos;
        let quote = self.input[start..].chars().next().unwrap_or('"');
        self.pos += 1;
        loop {
            let Some(c) = self.peek() else {
                return self.err(start, "unterminated quoted string".into());
            };
            self.pos += c.len_utf8();
            match c {
                '\\' => {
                    // Validity of escapes is checked when unquoting; here we
                    // only need to skip the escaped character.
                    match self.peek() {
                        None => return self.err(start, "escape sequence not terminated".into()),
                        Some(n) => self.pos += n.len_utf8(),
                    }
                }
                '\n' => return self.err(start, "unterminated quoted string".into()),
                c if c == quote => break,
                _ => {}
            }
        }
        self.emit(TokKind::Str, start);
        Ok(true)
    }

    fn raw_string(&mut self) -> Step {
        let start = self.pos;
        self.pos += 1;
        match self.input[self.pos..].find('`') {
            Some(i) => {
                self.pos += i + 1;
                self.emit(TokKind::Str, start);
                Ok(true)
            }
            None => {
                self.pos = self.input.len();
                self.err(start, "unterminated raw string".into())
            }
        }
    }

    fn keyword_or_identifier(&mut self) -> Step {
        let start = self.pos;
        let (rest, word) = identifier(self.rest(), true)
            .map_err(|_| (start, start + 1, "unexpected character".to_string()))?;
        self.pos = self.input.len() - rest.len();
        let mut buf = [0u8; 16];
        let kind = match lowercase(word, &mut buf).unwrap_or("") {
            "inf" | "nan" => TokKind::Number,
            "and" => TokKind::Op(BinaryOp::And),
            "or" => TokKind::Op(BinaryOp::Or),
            "unless" => TokKind::Op(BinaryOp::Unless),
            "atan2" => TokKind::Op(BinaryOp::Atan2),
            _ => match Kw::lookup(word) {
                Some(Kw::Fill) if !self.followed_by_paren() => TokKind::Ident,
                Some(kw) => TokKind::Keyword(kw),
                None if word.contains(':') => TokKind::MetricIdent,
                None => TokKind::Ident,
            },
        };
        self.emit(kind, start);
        Ok(true)
    }

    fn followed_by_paren(&self) -> bool {
        self.rest().trim_start_matches(is_space).starts_with('(')
    }
}

/// Go's `%q` of a single rune (`'x'`).
pub fn go_quote_char(c: char) -> String {
    let mut s = String::from("'");
    match c {
        '\'' => s.push_str("\\'"),
        '\\' => s.push_str("\\\\"),
        c => push_escaped(&mut s, c),
    }
    s.push('\'');
    s
}

/// Go's `strconv.Quote`: a double-quoted string with Go escapes for
/// quotes, backslashes and non-printable characters.
pub fn go_quote(text: &str) -> String {
    let mut s = String::with_capacity(text.len() + 2);
    s.push('"');
    for c in text.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            c => push_escaped(&mut s, c),
        }
    }
    s.push('"');
    s
}

fn push_escaped(s: &mut String, c: char) {
    use std::fmt::Write;
    match c {
        '\u{7}' => s.push_str("\\a"),
        '\u{8}' => s.push_str("\\b"),
        '\u{c}' => s.push_str("\\f"),
        '\n' => s.push_str("\\n"),
        '\r' => s.push_str("\\r"),
        '\t' => s.push_str("\\t"),
        '\u{b}' => s.push_str("\\v"),
        c if is_printable(c) => s.push(c),
        c if (c as u32) < 0x80 => {
            let _ = write!(s, "\\x{:02x}", c as u32);
        }
        c if (c as u32) < 0x10000 => {
            let _ = write!(s, "\\u{:04x}", c as u32);
        }
        c => {
            let _ = write!(s, "\\U{:08x}", c as u32);
        }
    }
}

/// An approximation of Go's `unicode.IsPrint`: not a control character,
/// not a separator other than the ASCII space, not a private-use,
/// surrogate or non-character code point.
fn is_printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    let u = c as u32;
    !(matches!(u, 0xAD | 0x200B..=0x200F | 0x2028..=0x202E | 0x2060..=0x206F | 0xFEFF)
        || (0xE000..=0xF8FF).contains(&u)
        || (0xFFF0..=0xFFFF).contains(&u)
        || u >= 0xF0000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(input: &str) -> Vec<TokKind> {
        tokenize(input).into_iter().map(|t| t.kind).collect()
    }

    #[test]
    fn tokens_of_a_typical_query() {
        use TokKind::*;
        assert_eq!(
            kinds("sum by (job) (rate(x{a=~\"b\"}[5m:1m])) > bool 0x1f # c"),
            vec![
                Keyword(Kw::Agg(AggregateOp::Sum)),
                Keyword(Kw::By),
                LParen,
                Ident,
                RParen,
                LParen,
                Ident,
                LParen,
                Ident,
                LBrace,
                Ident,
                EqlRegex,
                Str,
                RBrace,
                LBracket,
                Duration,
                Colon,
                Duration,
                RBracket,
                RParen,
                RParen,
                Op(BinaryOp::Gtr),
                Keyword(Kw::Bool),
                Number,
                Eof
            ]
        );
    }

    #[test]
    fn numbers_and_durations() {
        use TokKind::*;
        let check = |input: &str, want: TokKind| {
            let toks = tokenize(input);
            assert_eq!(toks[0].kind, want, "{input}");
            if !matches!(want, Error(_)) {
                assert_eq!(toks[0].end, input.len(), "{input}");
            }
        };
        for n in [
            "1", ".5", "5.", "1e3", "1E-3", "0x1F", "1_000", "NaN", "inF", "12.34e+6",
        ] {
            check(n, Number);
        }
        for d in ["5m", "1h30m", "500ms", "1y", "2w3d"] {
            check(d, Duration);
        }
        check(
            "2.5.",
            Error("bad number or duration syntax: \"2.5.\"".into()),
        );
        check(
            "5mm",
            Error("bad number or duration syntax: \"5mm\"".into()),
        );
        check(
            "0deadbeef",
            Error("bad number or duration syntax: \"0de\"".into()),
        );
    }

    #[test]
    fn go_quoting() {
        assert_eq!(go_quote("a\"b\\c\n\u{1}é"), "\"a\\\"b\\\\c\\n\\x01é\"");
        assert_eq!(go_quote_char('~'), "'~'");
    }
}
