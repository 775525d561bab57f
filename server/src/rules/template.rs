//! The subset of Go's text/template that Prometheus rule labels and
//! annotations use, with Prometheus's template functions.
//!
//! Supported: text and `{{ }}` actions with `{{-`/`-}}` trimming and
//! `{{/* comments */}}`; variables (`$labels`, `$value`, `$externalLabels`,
//! `$externalURL`, `$` and `.` for the data, `$x := ...`, `$x = ...`);
//! field chains (`$labels.job`, `.Labels.job`, `(query "up" | first).Value`);
//! pipelines (`$value | humanize`); `if`/`else if`/`else`/`end`,
//! `range` (with `$i, $e :=`) and `with`; Go's builtins `and or not eq ne lt
//! le gt ge len index print printf println`; Prometheus's `humanize`,
//! `humanize1024`, `humanizeDuration`, `humanizePercentage`,
//! `humanizeTimestamp`, `toUpper`, `toLower`, `title`, `reReplaceAll`,
//! `match`, `stripPort`, `stripDomain`, `query`, `first`, `value`, `label`,
//! `strvalue`, `sortByLabel`, `externalURL`.
//!
//! Numbers print as Go's `%v` prints a float64 (`1e+06`, `0.5`), missing
//! map keys as `<no value>`, and errors read as Go's (`template: name:1:
//! ...`). [`expand_alert_template`] puts an expansion error into the text
//! as Prometheus does (`<error expanding template: ...>`): an alert with a
//! broken annotation still fires.

use std::collections::BTreeMap;
use std::fmt;

/// A value inside a template.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// What a missing map key yields; prints `<no value>`.
    NoValue,
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    /// A map (missing keys yield [`Value::NoValue`]), ranged in key order.
    Map(BTreeMap<String, Value>),
    /// A struct: a missing field is an error.
    Struct(BTreeMap<String, Value>),
    List(Vec<Value>),
}

/// One sample of a `query` result.
#[derive(Debug, Clone, PartialEq)]
pub struct QuerySample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl QuerySample {
    fn to_value(&self) -> Value {
        let mut m = BTreeMap::new();
        m.insert("Labels".into(), string_map(&self.labels));
        m.insert("Value".into(), Value::Float(self.value));
        Value::Struct(m)
    }
}

fn string_map(m: &BTreeMap<String, String>) -> Value {
    Value::Map(
        m.iter()
            .map(|(k, v)| (k.clone(), Value::Str(v.clone())))
            .collect(),
    )
}

/// Runs the PromQL of a `query` call at the evaluation time.
pub type QueryFn<'a> = &'a dyn Fn(&str) -> Result<Vec<QuerySample>, String>;

/// A template error: `template: <name>:<line>: <message>`, as Go's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template: {name}:{line}: {message}")]
pub struct TemplateError {
    pub name: String,
    pub line: usize,
    pub message: String,
}

// --- syntax ----------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Var(String),
    Field(String),
    Dot,
    Str(String),
    Num(f64, bool),
    LParen,
    RParen,
    Pipe,
    Declare,
    Assign,
    Comma,
}

#[derive(Debug, Clone)]
enum Arg {
    /// `.a.b` (empty: `.` itself).
    Field(Vec<String>),
    /// `$x.a.b` (`$` alone is the data).
    Var(String, Vec<String>),
    Ident(String),
    Lit(Value),
    Paren(Box<Pipe>, Vec<String>),
}

#[derive(Debug, Clone)]
struct Pipe {
    decl: Vec<String>,
    assign: bool,
    cmds: Vec<Vec<Arg>>,
}

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Action(Pipe, usize),
    If(Pipe, Vec<Node>, Vec<Node>, usize),
    Range(Pipe, Vec<Node>, Vec<Node>, usize),
    With(Pipe, Vec<Node>, Vec<Node>, usize),
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    name: String,
    nodes: Vec<Node>,
}

/// One `{{ }}` action, tokenized, or a run of text.
enum Piece {
    Text(String),
    Action(Vec<Tok>, usize),
}

fn lex(name: &str, src: &str) -> Result<Vec<Piece>, TemplateError> {
    let err = |line: usize, message: String| TemplateError {
        name: name.to_string(),
        line,
        message,
    };
    let mut pieces = Vec::new();
    let mut rest = src;
    let mut line = 1;
    let mut trim_next = false;
    while !rest.is_empty() {
        let (text, after) = match rest.find("{{") {
            Some(i) => (&rest[..i], Some(&rest[i + 2..])),
            None => (rest, None),
        };
        let mut text = text.to_string();
        if trim_next {
            text = text.trim_start().to_string();
        }
        let Some(after) = after else {
            pieces.push(Piece::Text(text));
            break;
        };
        let trim_left =
            after.starts_with("- ") || after.starts_with("-\t") || after.starts_with("-\n");
        if trim_left {
            text = text.trim_end().to_string();
        }
        line += rest[..rest.len() - after.len()].matches('\n').count();
        pieces.push(Piece::Text(text));
        let body_start = if trim_left { &after[1..] } else { after };
        let Some(close) = find_close(body_start) else {
            return Err(err(line, "unclosed action".into()));
        };
        let mut body = &body_start[..close];
        trim_next = body.ends_with(" -") || body.ends_with("\t-") || body.ends_with("\n-");
        if trim_next {
            body = &body[..body.len() - 1];
        }
        let action_line = line;
        line += body_start[..close].matches('\n').count();
        rest = &body_start[close + 2..];
        let trimmed = body.trim();
        if trimmed.starts_with("/*") {
            if !trimmed.ends_with("*/") {
                return Err(err(action_line, "unclosed comment".into()));
            }
            continue;
        }
        let toks = lex_action(body).map_err(|m| err(action_line, m))?;
        pieces.push(Piece::Action(toks, action_line));
    }
    Ok(pieces)
}

/// The offset of the `}}` closing an action, skipping quoted strings.
fn find_close(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'`' => {
                i += 1;
                while i < b.len() && b[i] != b'`' {
                    i += 1;
                }
            }
            b'}' if b.get(i + 1) == Some(&b'}') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

fn is_word(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

fn lex_action(s: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = s.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    let word = |i: &mut usize| {
        let start = *i;
        while *i < chars.len() && is_word(chars[*i]) {
            *i += 1;
        }
        chars[start..*i].iter().collect::<String>()
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            '(' => {
                toks.push(Tok::LParen);
                i += 1
            }
            ')' => {
                toks.push(Tok::RParen);
                i += 1
            }
            '|' => {
                toks.push(Tok::Pipe);
                i += 1
            }
            ',' => {
                toks.push(Tok::Comma);
                i += 1
            }
            ':' if chars.get(i + 1) == Some(&'=') => {
                toks.push(Tok::Declare);
                i += 2
            }
            '=' => {
                toks.push(Tok::Assign);
                i += 1
            }
            '$' => {
                i += 1;
                toks.push(Tok::Var(word(&mut i)));
            }
            '.' if chars
                .get(i + 1)
                .is_some_and(|c| is_word(*c) && !c.is_ascii_digit()) =>
            {
                i += 1;
                toks.push(Tok::Field(word(&mut i)));
            }
            '.' if !chars.get(i + 1).is_some_and(|c| c.is_ascii_digit()) => {
                toks.push(Tok::Dot);
                i += 1
            }
            '"' => {
                let mut out = String::new();
                i += 1;
                loop {
                    let Some(&c) = chars.get(i) else {
                        return Err("unterminated quoted string".into());
                    };
                    i += 1;
                    match c {
                        '"' => break,
                        '\\' => {
                            let e = chars.get(i).copied().ok_or("unterminated quoted string")?;
                            i += 1;
                            out.push(match e {
                                'n' => '\n',
                                't' => '\t',
                                'r' => '\r',
                                '\\' => '\\',
                                '"' => '"',
                                '\'' => '\'',
                                other => return Err(format!("unknown escape sequence: \\{other}")),
                            });
                        }
                        '\n' => return Err("unterminated quoted string".into()),
                        c => out.push(c),
                    }
                }
                toks.push(Tok::Str(out));
            }
            '`' => {
                let start = i + 1;
                let end = chars[start..]
                    .iter()
                    .position(|&c| c == '`')
                    .ok_or("unterminated raw quoted string")?;
                toks.push(Tok::Str(chars[start..start + end].iter().collect()));
                i = start + end + 1;
            }
            c if c.is_ascii_digit()
                || ((c == '-' || c == '+' || c == '.')
                    && chars
                        .get(i + 1)
                        .is_some_and(|d| d.is_ascii_digit() || *d == '.')) =>
            {
                let start = i;
                i += 1;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric()
                        || chars[i] == '.'
                        || ((chars[i] == '-' || chars[i] == '+')
                            && matches!(chars[i - 1], 'e' | 'E')))
                {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                if let Ok(n) = text.parse::<i64>() {
                    toks.push(Tok::Num(n as f64, true));
                } else if let Ok(f) = text.parse::<f64>() {
                    toks.push(Tok::Num(f, false));
                } else {
                    return Err(format!("bad number syntax: {text:?}"));
                }
            }
            c if is_word(c) => toks.push(Tok::Ident(word(&mut i))),
            c => return Err(format!("unexpected {c:?} in command")),
        }
    }
    Ok(toks)
}

impl Template {
    /// Parses `text`; `name` appears in error messages.
    pub fn parse(name: &str, text: &str) -> Result<Template, TemplateError> {
        let pieces = lex(name, text)?;
        let mut p = Parser {
            name,
            pieces: pieces.into_iter().peekable(),
        };
        let (nodes, end) = p.list()?;
        if let Some((word, line)) = end {
            return Err(p.err(line, format!("unexpected {{{{{word}}}}}")));
        }
        Ok(Template {
            name: name.to_string(),
            nodes,
        })
    }
}

struct Parser<'a> {
    name: &'a str,
    pieces: std::iter::Peekable<std::vec::IntoIter<Piece>>,
}

/// How a list of nodes ended: `end`, `else` (with the tokens after it).
type ListEnd = Option<(String, usize)>;

impl Parser<'_> {
    fn err(&self, line: usize, message: String) -> TemplateError {
        TemplateError {
            name: self.name.to_string(),
            line,
            message,
        }
    }

    /// Nodes up to an `{{end}}` or `{{else ...}}` (returned, with the
    /// rest of the else action kept for `else if`).
    fn list(&mut self) -> Result<(Vec<Node>, ListEnd), TemplateError> {
        let mut nodes = Vec::new();
        while let Some(piece) = self.pieces.next() {
            let (toks, line) = match piece {
                Piece::Text(t) => {
                    if !t.is_empty() {
                        nodes.push(Node::Text(t));
                    }
                    continue;
                }
                Piece::Action(toks, line) => (toks, line),
            };
            match toks.first() {
                Some(Tok::Ident(w)) if w == "end" => {
                    if toks.len() > 1 {
                        return Err(self.err(line, "unexpected token in end".into()));
                    }
                    return Ok((nodes, Some(("end".into(), line))));
                }
                Some(Tok::Ident(w)) if w == "else" => {
                    let rest: Vec<Tok> = toks[1..].to_vec();
                    if !rest.is_empty() {
                        // `else if ...`: parsed as an `if` nested in the else.
                        self.push_front(Piece::Action(rest, line));
                        return Ok((nodes, Some(("else if".into(), line))));
                    }
                    return Ok((nodes, Some(("else".into(), line))));
                }
                Some(Tok::Ident(w)) if w == "if" || w == "range" || w == "with" => {
                    let kind = w.clone();
                    let pipe = self.pipe(&toks[1..], line, kind == "range")?;
                    let node = self.block(&kind, pipe, line)?;
                    nodes.push(node);
                }
                Some(Tok::Ident(w))
                    if matches!(
                        w.as_str(),
                        "define" | "template" | "block" | "break" | "continue"
                    ) =>
                {
                    return Err(self.err(
                        line,
                        format!("{{{{{w}}}}} is not supported in rule templates"),
                    ));
                }
                Some(_) => nodes.push(Node::Action(self.pipe(&toks, line, false)?, line)),
                None => return Err(self.err(line, "missing value for command".into())),
            }
        }
        Ok((nodes, None))
    }

    fn push_front(&mut self, piece: Piece) {
        let rest: Vec<Piece> = std::iter::once(piece).chain(self.pieces.by_ref()).collect();
        self.pieces = rest.into_iter().peekable();
    }

    fn block(&mut self, kind: &str, pipe: Pipe, line: usize) -> Result<Node, TemplateError> {
        let (then, end) = self.list()?;
        let else_ = match end.as_ref().map(|(w, _)| w.as_str()) {
            Some("end") => Vec::new(),
            Some("else") => {
                let (nodes, end2) = self.list()?;
                match end2.as_ref().map(|(w, _)| w.as_str()) {
                    Some("end") => nodes,
                    _ => return Err(self.err(line, format!("unexpected EOF in {kind}"))),
                }
            }
            Some(_) => {
                // `else if`: the pushed-back action begins with `if`.
                let Some(Piece::Action(toks, l)) = self.pieces.next() else {
                    return Err(self.err(line, "expected else if".into()));
                };
                match toks.first() {
                    Some(Tok::Ident(w)) if w == "if" || w == "with" => {
                        let inner_kind = w.clone();
                        let p = self.pipe(&toks[1..], l, false)?;
                        // The nested block consumes the shared `{{end}}`.
                        vec![self.block(&inner_kind, p, l)?]
                    }
                    _ => return Err(self.err(l, "expected end; found else".into())),
                }
            }
            None => return Err(self.err(line, format!("unexpected EOF in {kind}"))),
        };
        Ok(match kind {
            "if" => Node::If(pipe, then, else_, line),
            "range" => Node::Range(pipe, then, else_, line),
            _ => Node::With(pipe, then, else_, line),
        })
    }

    fn pipe(&self, toks: &[Tok], line: usize, range: bool) -> Result<Pipe, TemplateError> {
        let mut decl = Vec::new();
        let mut assign = false;
        let mut i = 0;
        // `$x :=`, `$x =`, or in range `$i, $e :=`.
        let mut j = 0;
        let mut vars = Vec::new();
        while let Some(Tok::Var(v)) = toks.get(j) {
            vars.push(v.clone());
            j += 1;
            if range && vars.len() == 1 && toks.get(j) == Some(&Tok::Comma) {
                j += 1;
                continue;
            }
            break;
        }
        if !vars.is_empty() {
            match toks.get(j) {
                Some(Tok::Declare) => {
                    decl = vars;
                    i = j + 1;
                }
                Some(Tok::Assign) => {
                    decl = vars;
                    assign = true;
                    i = j + 1;
                }
                _ => {}
            }
        }
        let mut pos = i;
        let pipe = self.cmds(toks, &mut pos, line, decl, assign)?;
        if pos != toks.len() {
            return Err(self.err(line, format!("unexpected {:?} in operand", toks[pos])));
        }
        Ok(pipe)
    }

    fn cmds(
        &self,
        toks: &[Tok],
        pos: &mut usize,
        line: usize,
        decl: Vec<String>,
        assign: bool,
    ) -> Result<Pipe, TemplateError> {
        let mut cmds = Vec::new();
        let mut cur = Vec::new();
        while let Some(t) = toks.get(*pos) {
            match t {
                Tok::RParen => break,
                Tok::Pipe => {
                    if cur.is_empty() {
                        return Err(self.err(line, "missing command".into()));
                    }
                    cmds.push(std::mem::take(&mut cur));
                    *pos += 1;
                }
                _ => cur.push(self.operand(toks, pos, line)?),
            }
        }
        if cur.is_empty() {
            return Err(self.err(line, "missing value for command".into()));
        }
        cmds.push(cur);
        Ok(Pipe { decl, assign, cmds })
    }

    fn operand(&self, toks: &[Tok], pos: &mut usize, line: usize) -> Result<Arg, TemplateError> {
        let t = toks[*pos].clone();
        *pos += 1;
        let mut arg = match t {
            Tok::Ident(w) => match w.as_str() {
                "true" => Arg::Lit(Value::Bool(true)),
                "false" => Arg::Lit(Value::Bool(false)),
                "nil" => Arg::Lit(Value::Nil),
                _ => {
                    if !is_function(&w) {
                        return Err(self.err(line, format!("function {w:?} not defined")));
                    }
                    Arg::Ident(w)
                }
            },
            Tok::Var(v) => Arg::Var(v, Vec::new()),
            Tok::Field(f) => Arg::Field(vec![f]),
            Tok::Dot => Arg::Field(Vec::new()),
            Tok::Str(s) => Arg::Lit(Value::Str(s)),
            Tok::Num(n, true) => Arg::Lit(Value::Int(n as i64)),
            Tok::Num(n, false) => Arg::Lit(Value::Float(n)),
            Tok::LParen => {
                let inner = self.cmds(toks, pos, line, Vec::new(), false)?;
                if toks.get(*pos) != Some(&Tok::RParen) {
                    return Err(self.err(line, "unclosed left paren".into()));
                }
                *pos += 1;
                Arg::Paren(Box::new(inner), Vec::new())
            }
            other => return Err(self.err(line, format!("unexpected {other:?} in operand"))),
        };
        while let Some(Tok::Field(f)) = toks.get(*pos) {
            match &mut arg {
                Arg::Field(fs) | Arg::Var(_, fs) | Arg::Paren(_, fs) => fs.push(f.clone()),
                _ => return Err(self.err(line, format!("unexpected .{f} after operand"))),
            }
            *pos += 1;
        }
        Ok(arg)
    }
}

const FUNCTIONS: &[&str] = &[
    "and",
    "or",
    "not",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "len",
    "index",
    "print",
    "printf",
    "println",
    "humanize",
    "humanize1024",
    "humanizeDuration",
    "humanizePercentage",
    "humanizeTimestamp",
    "toUpper",
    "toLower",
    "title",
    "reReplaceAll",
    "match",
    "stripPort",
    "stripDomain",
    "query",
    "first",
    "value",
    "label",
    "strvalue",
    "sortByLabel",
    "externalURL",
    "safeHtml",
    "toTime",
    "args",
];

fn is_function(w: &str) -> bool {
    FUNCTIONS.contains(&w)
}

// --- execution -------------------------------------------------------------

/// What a template is expanded against.
pub struct Data<'a> {
    pub labels: &'a BTreeMap<String, String>,
    pub external_labels: &'a BTreeMap<String, String>,
    pub external_url: &'a str,
    pub value: f64,
    /// `query`'s PromQL runner; `None` makes `query` an error.
    pub query: Option<QueryFn<'a>>,
}

struct Exec<'a, 'b> {
    vars: Vec<(String, Value)>,
    query: Option<QueryFn<'a>>,
    external_url: &'b str,
    out: String,
    /// Bound on loop iterations and output, so a template cannot run away.
    budget: usize,
}

type ExecResult<T> = Result<T, String>;

impl Template {
    /// Expands the template against `data`.
    pub fn execute(&self, data: &Data<'_>) -> Result<String, TemplateError> {
        let mut root = BTreeMap::new();
        root.insert("Labels".to_string(), string_map(data.labels));
        root.insert(
            "ExternalLabels".to_string(),
            string_map(data.external_labels),
        );
        root.insert(
            "ExternalURL".to_string(),
            Value::Str(data.external_url.to_string()),
        );
        root.insert("Value".to_string(), Value::Float(data.value));
        let root = Value::Struct(root);
        let vars = vec![
            (String::new(), root.clone()),
            ("labels".to_string(), string_map(data.labels)),
            (
                "externalLabels".to_string(),
                string_map(data.external_labels),
            ),
            (
                "externalURL".to_string(),
                Value::Str(data.external_url.to_string()),
            ),
            ("value".to_string(), Value::Float(data.value)),
        ];
        let mut ex = Exec {
            vars,
            query: data.query,
            external_url: data.external_url,
            out: String::new(),
            budget: 1_000_000,
        };
        let mut line = 1;
        ex.nodes(&self.nodes, &root, &mut line)
            .map_err(|m| TemplateError {
                name: self.name.clone(),
                line,
                message: format!("executing {:?}: {m}", self.name),
            })?;
        Ok(ex.out)
    }
}

impl Exec<'_, '_> {
    fn nodes(&mut self, nodes: &[Node], dot: &Value, line: &mut usize) -> ExecResult<()> {
        for n in nodes {
            match n {
                Node::Text(t) => self.out.push_str(t),
                Node::Action(p, l) => {
                    *line = *l;
                    let v = self.pipe(p, dot)?;
                    if p.decl.is_empty() {
                        self.out.push_str(&print_value(&v));
                    }
                }
                Node::If(p, then, els, l) | Node::With(p, then, els, l) => {
                    *line = *l;
                    let mark = self.vars.len();
                    let v = self.pipe(p, dot)?;
                    let with = matches!(n, Node::With(..));
                    if truth(&v) {
                        self.nodes(then, if with { &v } else { dot }, line)?;
                    } else {
                        self.nodes(els, dot, line)?;
                    }
                    self.vars.truncate(mark);
                }
                Node::Range(p, body, els, l) => {
                    *line = *l;
                    let mark = self.vars.len();
                    let decl = p.decl.clone();
                    let plain = Pipe {
                        decl: Vec::new(),
                        assign: false,
                        cmds: p.cmds.clone(),
                    };
                    let v = self.pipe(&plain, dot)?;
                    let items: Vec<(Value, Value)> = match v {
                        Value::Map(m) | Value::Struct(m) => {
                            m.into_iter().map(|(k, v)| (Value::Str(k), v)).collect()
                        }
                        Value::List(l) => l
                            .into_iter()
                            .enumerate()
                            .map(|(i, v)| (Value::Int(i as i64), v))
                            .collect(),
                        Value::Int(n) => (0..n.max(0))
                            .map(|i| (Value::Int(i), Value::Int(i)))
                            .collect(),
                        Value::Nil | Value::NoValue => Vec::new(),
                        other => {
                            return Err(format!(
                                "range can't iterate over {}",
                                print_value(&other)
                            ));
                        }
                    };
                    if items.is_empty() {
                        self.nodes(els, dot, line)?;
                    }
                    for (k, v) in items {
                        self.spend(1)?;
                        let inner = self.vars.len();
                        match decl.as_slice() {
                            [e] => self.vars.push((e.clone(), v.clone())),
                            [i, e] => {
                                self.vars.push((i.clone(), k));
                                self.vars.push((e.clone(), v.clone()));
                            }
                            _ => {}
                        }
                        self.nodes(body, &v, line)?;
                        self.vars.truncate(inner);
                    }
                    self.vars.truncate(mark);
                }
            }
            self.spend(0)?;
        }
        Ok(())
    }

    fn spend(&mut self, n: usize) -> ExecResult<()> {
        self.budget = self.budget.saturating_sub(n);
        if self.budget == 0 || self.out.len() > 1 << 20 {
            return Err("template output or iterations over the limit".into());
        }
        Ok(())
    }

    fn pipe(&mut self, p: &Pipe, dot: &Value) -> ExecResult<Value> {
        let mut v: Option<Value> = None;
        for cmd in &p.cmds {
            v = Some(self.command(cmd, dot, v)?);
        }
        let v = v.unwrap_or(Value::Nil);
        for name in &p.decl {
            if p.assign {
                match self.vars.iter_mut().rev().find(|(n, _)| n == name) {
                    Some(slot) => slot.1 = v.clone(),
                    None => return Err(format!("undefined variable: ${name}")),
                }
            } else {
                self.vars.push((name.clone(), v.clone()));
            }
        }
        Ok(v)
    }

    fn command(&mut self, cmd: &[Arg], dot: &Value, piped: Option<Value>) -> ExecResult<Value> {
        if let Some(Arg::Ident(f)) = cmd.first() {
            if f == "and" || f == "or" {
                // Short-circuit, returning the deciding argument as Go does.
                let mut last = Value::Nil;
                let n = cmd.len() - 1 + usize::from(piped.is_some());
                if n == 0 {
                    return Err(format!(
                        "wrong number of args for {f}: want at least 1 got 0"
                    ));
                }
                for a in &cmd[1..] {
                    last = self.arg(a, dot)?;
                    if truth(&last) == (f == "or") {
                        return Ok(last);
                    }
                }
                if let Some(p) = piped {
                    last = p;
                }
                return Ok(last);
            }
            let mut args = Vec::with_capacity(cmd.len());
            for a in &cmd[1..] {
                args.push(self.arg(a, dot)?);
            }
            if let Some(p) = piped {
                args.push(p);
            }
            return self.call(f, args);
        }
        if cmd.len() > 1 || piped.is_some() {
            return Err(format!(
                "can't give argument to non-function {}",
                describe(&cmd[0])
            ));
        }
        self.arg(&cmd[0], dot)
    }

    fn arg(&mut self, a: &Arg, dot: &Value) -> ExecResult<Value> {
        match a {
            Arg::Lit(v) => Ok(v.clone()),
            Arg::Field(fs) => fields(dot.clone(), fs),
            Arg::Var(name, fs) => {
                let v = self
                    .vars
                    .iter()
                    .rev()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
                    .ok_or_else(|| format!("undefined variable: ${name}"))?;
                fields(v, fs)
            }
            Arg::Ident(f) => self.call(f, Vec::new()),
            Arg::Paren(p, fs) => {
                let v = self.pipe(p, dot)?;
                fields(v, fs)
            }
        }
    }

    fn call(&mut self, f: &str, args: Vec<Value>) -> ExecResult<Value> {
        let want = |n: usize| -> ExecResult<()> {
            if args.len() == n {
                Ok(())
            } else {
                Err(format!(
                    "wrong number of args for {f}: want {n} got {}",
                    args.len()
                ))
            }
        };
        Ok(match f {
            "not" => {
                want(1)?;
                Value::Bool(!truth(&args[0]))
            }
            "eq" | "ne" | "lt" | "le" | "gt" | "ge" => {
                if args.len() < 2 {
                    return Err(format!(
                        "wrong number of args for {f}: want 2 got {}",
                        args.len()
                    ));
                }
                if f == "eq" {
                    let mut any = false;
                    for b in &args[1..] {
                        any |= compare(&args[0], b)? == std::cmp::Ordering::Equal;
                    }
                    Value::Bool(any)
                } else {
                    want(2)?;
                    let o = compare(&args[0], &args[1])?;
                    use std::cmp::Ordering::*;
                    Value::Bool(match f {
                        "ne" => o != Equal,
                        "lt" => o == Less,
                        "le" => o != Greater,
                        "gt" => o == Greater,
                        _ => o != Less,
                    })
                }
            }
            "len" => {
                want(1)?;
                Value::Int(match &args[0] {
                    Value::Str(s) => s.len(),
                    Value::Map(m) | Value::Struct(m) => m.len(),
                    Value::List(l) => l.len(),
                    other => return Err(format!("len of {}", type_name(other))),
                } as i64)
            }
            "index" => {
                let mut it = args.into_iter();
                let mut v = it
                    .next()
                    .ok_or("wrong number of args for index: want at least 1 got 0")?;
                for k in it {
                    v = match (v, k) {
                        (Value::Map(m), Value::Str(k)) => {
                            m.get(&k).cloned().unwrap_or(Value::NoValue)
                        }
                        (Value::List(l), Value::Int(i)) => l
                            .get(
                                usize::try_from(i)
                                    .map_err(|_| format!("index out of range: {i}"))?,
                            )
                            .cloned()
                            .ok_or_else(|| format!("index out of range: {i}"))?,
                        (v, k) => {
                            return Err(format!(
                                "can't index item of type {} with {}",
                                type_name(&v),
                                type_name(&k)
                            ));
                        }
                    };
                }
                v
            }
            "print" | "println" => {
                let mut s = String::new();
                for (i, a) in args.iter().enumerate() {
                    // Go's Sprint puts spaces between operands when neither is a string.
                    let sep = f == "println"
                        || (i > 0
                            && !matches!(a, Value::Str(_))
                            && !matches!(args[i - 1], Value::Str(_)));
                    if i > 0 && sep {
                        s.push(' ');
                    }
                    s.push_str(&print_value(a));
                }
                if f == "println" {
                    s.push('\n');
                }
                Value::Str(s)
            }
            "printf" => {
                let mut it = args.into_iter();
                let Some(Value::Str(format)) = it.next() else {
                    return Err("printf: the format must be a string".into());
                };
                Value::Str(sprintf(&format, &it.collect::<Vec<_>>()))
            }
            "humanize" | "humanize1024" | "humanizeDuration" | "humanizePercentage"
            | "humanizeTimestamp" => {
                want(1)?;
                let v = to_float(&args[0]).ok_or_else(|| {
                    format!(
                        "error calling {f}: can't convert {} to float",
                        print_value(&args[0])
                    )
                })?;
                Value::Str(match f {
                    "humanize" => humanize(v),
                    "humanize1024" => humanize1024(v),
                    "humanizeDuration" => humanize_duration(v),
                    "humanizePercentage" => format!("{}%", go_fmt_g(v * 100.0, Some(4))),
                    _ => humanize_timestamp(v),
                })
            }
            "toUpper" | "toLower" | "title" | "stripPort" | "stripDomain" | "safeHtml" => {
                want(1)?;
                let s = as_str(&args[0], f)?;
                Value::Str(match f {
                    "toUpper" => s.to_uppercase(),
                    "toLower" => s.to_lowercase(),
                    "title" => title(&s),
                    "stripPort" => strip_port(&s),
                    "stripDomain" => strip_domain(&s),
                    _ => s,
                })
            }
            "reReplaceAll" => {
                want(3)?;
                // Go's regexp: ASCII \d, \w, \s, \b.
                let re = regex::Regex::new(&cairn_engine::matcher::go_regex(&as_str(&args[0], f)?))
                    .map_err(|e| format!("error calling reReplaceAll: {e}"))?;
                let repl = as_str(&args[1], f)?;
                Value::Str(
                    re.replace_all(&as_str(&args[2], f)?, repl.as_str())
                        .into_owned(),
                )
            }
            "match" => {
                want(2)?;
                let re = regex::Regex::new(&cairn_engine::matcher::go_regex(&as_str(&args[0], f)?))
                    .map_err(|e| format!("error calling match: {e}"))?;
                Value::Bool(re.is_match(&as_str(&args[1], f)?))
            }
            "externalURL" => {
                want(0)?;
                Value::Str(self.external_url.to_string())
            }
            "query" => {
                want(1)?;
                let q = as_str(&args[0], f)?;
                let run = self
                    .query
                    .ok_or("error calling query: queries are not available here")?;
                let samples = run(&q).map_err(|e| format!("error calling query: {e}"))?;
                self.spend(samples.len())?;
                Value::List(samples.iter().map(QuerySample::to_value).collect())
            }
            "first" => {
                want(1)?;
                match &args[0] {
                    Value::List(l) => l
                        .first()
                        .cloned()
                        .ok_or("error calling first: first() called on vector with no elements")?,
                    other => {
                        return Err(format!(
                            "error calling first: not a query result: {}",
                            type_name(other)
                        ));
                    }
                }
            }
            "value" | "label" | "strvalue" => {
                let (sample, key) = match (f, args.as_slice()) {
                    ("label", [k, s]) => (s, Some(as_str(k, f)?)),
                    (_, [s]) => (s, None),
                    _ => return Err(format!("wrong number of args for {f}")),
                };
                let Value::Struct(m) = sample else {
                    return Err(format!(
                        "error calling {f}: not a sample: {}",
                        type_name(sample)
                    ));
                };
                match (f, key) {
                    ("value", _) => m.get("Value").cloned().unwrap_or(Value::Nil),
                    (_, key) => {
                        let key = key.unwrap_or_else(|| "__value__".to_string());
                        match m.get("Labels") {
                            Some(Value::Map(l)) => {
                                l.get(&key).cloned().unwrap_or(Value::Str(String::new()))
                            }
                            _ => Value::Str(String::new()),
                        }
                    }
                }
            }
            "sortByLabel" => {
                want(2)?;
                let key = as_str(&args[0], f)?;
                let Value::List(mut l) = args[1].clone() else {
                    return Err("error calling sortByLabel: not a query result".into());
                };
                let label_of = |v: &Value| match v {
                    Value::Struct(m) => match m.get("Labels") {
                        Some(Value::Map(l)) => match l.get(&key) {
                            Some(Value::Str(s)) => s.clone(),
                            _ => String::new(),
                        },
                        _ => String::new(),
                    },
                    _ => String::new(),
                };
                l.sort_by_key(label_of);
                Value::List(l)
            }
            "toTime" => {
                want(1)?;
                let v = to_float(&args[0]).ok_or("error calling toTime: not a number")?;
                Value::Str(humanize_timestamp(v))
            }
            "args" => Value::Map(
                args.into_iter()
                    .enumerate()
                    .map(|(i, v)| (format!("arg{i}"), v))
                    .collect(),
            ),
            other => return Err(format!("function {other:?} not defined")),
        })
    }
}

fn describe(a: &Arg) -> String {
    match a {
        Arg::Lit(v) => print_value(v),
        Arg::Field(fs) => format!(".{}", fs.join(".")),
        Arg::Var(n, fs) => {
            let mut s = format!("${n}");
            for f in fs {
                s.push('.');
                s.push_str(f);
            }
            s
        }
        Arg::Ident(f) => f.clone(),
        Arg::Paren(..) => "(...)".into(),
    }
}

fn fields(mut v: Value, fs: &[String]) -> ExecResult<Value> {
    for f in fs {
        v = match v {
            Value::Map(m) => m.get(f).cloned().unwrap_or(Value::NoValue),
            Value::Struct(m) => m
                .get(f)
                .cloned()
                .ok_or_else(|| format!("can't evaluate field {f} in type struct"))?,
            Value::Nil | Value::NoValue => return Err(format!("nil pointer evaluating .{f}")),
            other => {
                return Err(format!(
                    "can't evaluate field {f} in type {}",
                    type_name(&other)
                ));
            }
        };
    }
    Ok(v)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::NoValue | Value::Nil => "nil",
        Value::Bool(_) => "bool",
        Value::Int(_) => "int",
        Value::Float(_) => "float64",
        Value::Str(_) => "string",
        Value::Map(_) => "map[string]string",
        Value::Struct(_) => "struct",
        Value::List(_) => "slice",
    }
}

fn truth(v: &Value) -> bool {
    match v {
        Value::NoValue | Value::Nil => false,
        Value::Bool(b) => *b,
        Value::Int(i) => *i != 0,
        Value::Float(f) => *f != 0.0,
        Value::Str(s) => !s.is_empty(),
        Value::Map(m) | Value::Struct(m) => !m.is_empty(),
        Value::List(l) => !l.is_empty(),
    }
}

fn to_float(v: &Value) -> Option<f64> {
    match v {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        // Prometheus's humanize functions accept strings holding numbers.
        Value::Str(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn as_str(v: &Value, f: &str) -> ExecResult<String> {
    match v {
        Value::Str(s) => Ok(s.clone()),
        other => Err(format!(
            "wrong type for value; expected string; got {} (calling {f})",
            type_name(other)
        )),
    }
}

fn compare(a: &Value, b: &Value) -> ExecResult<std::cmp::Ordering> {
    use std::cmp::Ordering;
    match (a, b) {
        (Value::Str(x), Value::Str(y)) => Ok(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Ok(x.cmp(y)),
        (Value::Int(x), Value::Int(y)) => Ok(x.cmp(y)),
        (Value::Float(_) | Value::Int(_), Value::Float(_) | Value::Int(_)) => {
            let (x, y) = (
                to_float(a).unwrap_or(f64::NAN),
                to_float(b).unwrap_or(f64::NAN),
            );
            Ok(x.partial_cmp(&y).unwrap_or(Ordering::Less))
        }
        _ => Err(format!(
            "incompatible types for comparison: {} and {}",
            type_name(a),
            type_name(b)
        )),
    }
}

/// How Go's `fmt.Sprint` prints a value.
fn print_value(v: &Value) -> String {
    match v {
        Value::NoValue => "<no value>".into(),
        Value::Nil => "<nil>".into(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => go_fmt_g(*f, None),
        Value::Str(s) => s.clone(),
        Value::Map(m) | Value::Struct(m) => {
            let inner: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{k}:{}", print_value(v)))
                .collect();
            if matches!(v, Value::Map(_)) {
                format!("map[{}]", inner.join(" "))
            } else {
                let vals: Vec<String> = m.values().map(print_value).collect();
                format!("{{{}}}", vals.join(" "))
            }
        }
        Value::List(l) => {
            let inner: Vec<String> = l.iter().map(print_value).collect();
            format!("[{}]", inner.join(" "))
        }
    }
}

/// Go's `%g` (`prec` digits) or `%v` (`None`: shortest) for a float64:
/// exponent form when the exponent is below -4 or at least the precision
/// (6 for the shortest form), at least two exponent digits, no trailing zeros.
pub fn go_fmt_g(v: f64, prec: Option<usize>) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let sci = match prec {
        Some(p) => format!("{:.*e}", p.max(1) - 1, v),
        None => format!("{v:e}"),
    };
    let (mant, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mant) = match mant.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mant),
    };
    let mut digits: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
    while digits.len() > 1 && digits.ends_with('0') {
        digits.pop();
    }
    if digits == "0" {
        return format!("{sign}0");
    }
    let nd = digits.len() as i32;
    let dp = exp + 1;
    let eprec = match prec {
        None => 6,
        Some(p) => {
            let p = p.max(1) as i32;
            if p > nd && nd >= dp { nd } else { p }
        }
    };
    if exp < -4 || exp >= eprec {
        let (first, rest) = digits.split_at(1);
        let dot = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{first}{dot}e{esign}{:02}", exp.abs());
    }
    let body = if dp <= 0 {
        format!("0.{}{digits}", "0".repeat((-dp) as usize))
    } else if dp >= nd {
        format!("{digits}{}", "0".repeat((dp - nd) as usize))
    } else {
        let (a, b) = digits.split_at(dp as usize);
        format!("{a}.{b}")
    };
    format!("{sign}{body}")
}

fn humanize(mut v: f64) -> String {
    if v == 0.0 || v.is_nan() || v.is_infinite() {
        return go_fmt_g(v, Some(4));
    }
    let mut prefix = "";
    if v.abs() >= 1.0 {
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
    } else {
        for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
            if v.abs() >= 1.0 {
                break;
            }
            prefix = p;
            v *= 1000.0;
        }
    }
    format!("{}{prefix}", go_fmt_g(v, Some(4)))
}

fn humanize1024(mut v: f64) -> String {
    if v.abs() <= 1.0 || v.is_nan() || v.is_infinite() {
        return go_fmt_g(v, Some(4));
    }
    let mut prefix = "";
    for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = p;
        v /= 1024.0;
    }
    format!("{}{prefix}", go_fmt_g(v, Some(4)))
}

fn humanize_duration(v: f64) -> String {
    if v.is_nan() || v.is_infinite() {
        return go_fmt_g(v, Some(4));
    }
    if v == 0.0 {
        return "0s".into();
    }
    if v.abs() >= 1.0 {
        let sign = if v < 0.0 { "-" } else { "" };
        let v = v.abs();
        let whole = v as i64;
        let days = whole / 86_400;
        let hours = whole / 3_600 % 24;
        let minutes = whole / 60 % 60;
        let seconds = go_fmt_g(v % 60.0, Some(4));
        return if days != 0 {
            format!("{sign}{days}d {hours}h {minutes}m {seconds}s")
        } else if hours != 0 {
            format!("{sign}{hours}h {minutes}m {seconds}s")
        } else if minutes != 0 {
            format!("{sign}{minutes}m {seconds}s")
        } else {
            format!("{sign}{seconds}s")
        };
    }
    let mut v = v;
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}s", go_fmt_g(v, Some(4)))
}

/// Seconds since the epoch as Go prints a UTC `time.Time`.
fn humanize_timestamp(v: f64) -> String {
    if v.is_nan() || v.is_infinite() {
        return go_fmt_g(v, Some(4));
    }
    // As Prometheus: seconds to nanoseconds, then to milliseconds.
    let ms = ((v * 1e9) as i64).div_euclid(1_000_000);
    let (secs, nanos) = (
        ms.div_euclid(1000),
        (ms.rem_euclid(1000) * 1_000_000) as u32,
    );
    match chrono::DateTime::from_timestamp(secs, nanos) {
        Some(t) => {
            let mut s = t.format("%Y-%m-%d %H:%M:%S").to_string();
            if nanos > 0 {
                let frac = format!("{:09}", nanos);
                s.push('.');
                s.push_str(frac.trim_end_matches('0'));
            }
            s.push_str(" +0000 UTC");
            s
        }
        None => go_fmt_g(v, Some(4)),
    }
}

/// Go's `strings.Title`: the first letter of each word upper-cased.
fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_letter = false;
    for c in s.chars() {
        let word = c.is_alphanumeric() || c == '_' || c == '\'';
        if word && !prev_letter {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        prev_letter = word;
    }
    out
}

fn strip_port(s: &str) -> String {
    if let Some(rest) = s.strip_prefix('[')
        && let Some(end) = rest.find(']')
    {
        return rest[..end].to_string();
    }
    match s.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && !port.is_empty() => host.to_string(),
        _ => s.to_string(),
    }
}

fn strip_domain(s: &str) -> String {
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, Some(p)),
        _ => (s, None),
    };
    if host.parse::<std::net::IpAddr>().is_ok() {
        return s.to_string();
    }
    let short = host.split('.').next().unwrap_or(host);
    match port {
        Some(p) => format!("{short}:{p}"),
        None => short.to_string(),
    }
}

/// Go's `fmt.Sprintf` for the verbs templates use: `%s %v %d %f %e %g %q
/// %x %X %t %%`, with flags `-+ 0`, width and precision.
pub fn sprintf(format: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut args = args.iter();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut flags = String::new();
        while let Some(&f) = chars.peek() {
            if "-+ 0#".contains(f) {
                flags.push(f);
                chars.next();
            } else {
                break;
            }
        }
        let mut width = String::new();
        while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            width.push(d);
            chars.next();
        }
        let mut prec: Option<usize> = None;
        if chars.peek() == Some(&'.') {
            chars.next();
            let mut p = String::new();
            while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                p.push(d);
                chars.next();
            }
            prec = Some(p.parse().unwrap_or(0));
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.next() else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        let plus = flags.contains('+');
        let body = match (verb, arg) {
            ('v' | 's', Value::Float(f)) if verb == 'v' => go_fmt_g(*f, None),
            ('s' | 'v', v) => {
                let s = print_value(v);
                match prec {
                    Some(p) => s.chars().take(p).collect(),
                    None => s,
                }
            }
            ('q', v) => format!("{:?}", print_value(v)),
            ('d', Value::Int(i)) => sign_plus(i.to_string(), plus),
            ('d', Value::Float(f)) => format!("%!d(float64={})", go_fmt_g(*f, None)),
            ('f' | 'F', v) if to_float(v).is_some() && !matches!(v, Value::Str(_)) => {
                let f = to_float(v).unwrap_or(f64::NAN);
                if f.is_finite() {
                    sign_plus(format!("{:.*}", prec.unwrap_or(6), f), plus)
                } else {
                    go_fmt_g(f, None)
                }
            }
            ('e', v) if to_float(v).is_some() && !matches!(v, Value::Str(_)) => {
                let f = to_float(v).unwrap_or(f64::NAN);
                let s = format!("{:.*e}", prec.unwrap_or(6), f);
                let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
                let e: i32 = e.parse().unwrap_or(0);
                let esign = if e < 0 { '-' } else { '+' };
                sign_plus(format!("{m}e{esign}{:02}", e.abs()), plus)
            }
            ('g', v) if to_float(v).is_some() && !matches!(v, Value::Str(_)) => {
                sign_plus(go_fmt_g(to_float(v).unwrap_or(f64::NAN), prec), plus)
            }
            ('x', Value::Int(i)) => format!("{i:x}"),
            ('X', Value::Int(i)) => format!("{i:X}"),
            ('x', Value::Str(s)) => s.bytes().map(|b| format!("{b:02x}")).collect(),
            ('t', Value::Bool(b)) => b.to_string(),
            (verb, v) => format!("%!{verb}({}={})", type_name(v), print_value(v)),
        };
        let width: usize = width.parse().unwrap_or(0);
        let len = body.chars().count();
        if len >= width {
            out.push_str(&body);
        } else if flags.contains('-') {
            out.push_str(&body);
            out.push_str(&" ".repeat(width - len));
        } else if flags.contains('0') && !matches!(verb, 's' | 'q' | 'v') {
            let (sign, digits) = match body.strip_prefix('-') {
                Some(d) => ("-", d),
                None => ("", body.as_str()),
            };
            out.push_str(sign);
            out.push_str(&"0".repeat(width - len));
            out.push_str(digits);
        } else {
            out.push_str(&" ".repeat(width - len));
            out.push_str(&body);
        }
    }
    let extra: Vec<&Value> = args.collect();
    if !extra.is_empty() {
        let parts: Vec<String> = extra
            .iter()
            .map(|v| format!("{}={}", type_name(v), print_value(v)))
            .collect();
        out.push_str(&format!("%!(EXTRA {})", parts.join(", ")));
    }
    out
}

fn sign_plus(s: String, plus: bool) -> String {
    if plus && !s.starts_with('-') {
        format!("+{s}")
    } else {
        s
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&print_value(self))
    }
}

/// Expands an alert's label or annotation template as Prometheus does: a
/// parse or execution error becomes the text `<error expanding template:
/// ...>` rather than failing the evaluation.
pub fn expand_alert_template(alert_name: &str, text: &str, data: &Data<'_>) -> String {
    if !text.contains("{{") {
        return text.to_string();
    }
    let name = format!("__alert_{alert_name}");
    match Template::parse(&name, text).and_then(|t| t.execute(data)) {
        Ok(s) => s,
        Err(e) => format!("<error expanding template: {e}>"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(text: &str, value: f64) -> String {
        let labels: BTreeMap<String, String> =
            [("job", "api"), ("instance", "host-1.example.com:9090")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        let ext: BTreeMap<String, String> = [("cluster".to_string(), "eu-1".to_string())]
            .into_iter()
            .collect();
        let query = |q: &str| -> Result<Vec<QuerySample>, String> {
            match q {
                "up" => Ok(vec![
                    QuerySample {
                        labels: [("job".to_string(), "b".to_string())].into_iter().collect(),
                        value: 1.0,
                    },
                    QuerySample {
                        labels: [("job".to_string(), "a".to_string())].into_iter().collect(),
                        value: 0.25,
                    },
                ]),
                "none" => Ok(Vec::new()),
                other => Err(format!("bad query {other:?}")),
            }
        };
        let data = Data {
            labels: &labels,
            external_labels: &ext,
            external_url: "http://cairn:9201",
            value,
            query: Some(&query),
        };
        expand_alert_template("A", text, &data)
    }

    #[test]
    fn expansion_table() {
        // (template, $value, expected output)
        let cases: &[(&str, f64, &str)] = &[
            ("plain text", 0.0, "plain text"),
            (
                "{{ $labels.job }} on {{ $labels.instance }}",
                0.0,
                "api on host-1.example.com:9090",
            ),
            ("{{ .Labels.job }}/{{ $.Labels.job }}", 0.0, "api/api"),
            ("[{{ $labels.missing }}]", 0.0, "[<no value>]"),
            (
                "{{ $externalLabels.cluster }} {{ $externalURL }}",
                0.0,
                "eu-1 http://cairn:9201",
            ),
            ("{{ $value }}", 0.5, "0.5"),
            ("{{ $value }}", 1e6, "1e+06"),
            ("{{ $value }}", 123456.0, "123456"),
            ("{{ $value }}", 2.0, "2"),
            ("{{ $value | humanize }}", 1234567.0, "1.235M"),
            ("{{ $value | humanize }}", 0.00123, "1.23m"),
            ("{{ $value | humanize }}", 0.0, "0"),
            ("{{ humanize 12 }}", 0.0, "12"),
            ("{{ $value | humanize1024 }}", 1048576.0, "1Mi"),
            ("{{ $value | humanize1024 }}", 0.5, "0.5"),
            ("{{ $value | humanizeDuration }}", 90061.0, "1d 1h 1m 1s"),
            ("{{ $value | humanizeDuration }}", 65.5, "1m 5.5s"),
            ("{{ $value | humanizeDuration }}", 0.25, "250ms"),
            ("{{ $value | humanizeDuration }}", 0.0, "0s"),
            ("{{ $value | humanizePercentage }}", 0.12345, "12.35%"),
            (
                "{{ humanizeTimestamp 1435065584.128 }}",
                0.0,
                "2015-06-23 13:19:44.128 +0000 UTC",
            ),
            ("{{ printf \"%.2f\" $value }}", 1.23456, "1.23"),
            (
                "{{ printf \"%s=%d %5.1f|%-4s|\" \"a\" 7 2.25 \"x\" }}",
                0.0,
                "a=7   2.2|x   |",
            ),
            ("{{ printf \"%v%%\" $value }}", 0.5, "0.5%"),
            (
                "{{ $labels.job | toUpper }} {{ toLower \"AbC\" }} {{ title \"hello big world\" }}",
                0.0,
                "API abc Hello Big World",
            ),
            (
                "{{ reReplaceAll \"(.*):.*\" \"$1\" $labels.instance }}",
                0.0,
                "host-1.example.com",
            ),
            (
                "{{ $labels.instance | stripPort }} {{ $labels.instance | stripDomain }}",
                0.0,
                "host-1.example.com host-1:9090",
            ),
            (
                "{{ if gt $value 1.0 }}high{{ else }}low{{ end }}",
                2.0,
                "high",
            ),
            (
                "{{ if gt $value 1.0 }}high{{ else if gt $value 0.5 }}mid{{ else }}low{{ end }}",
                0.7,
                "mid",
            ),
            (
                "{{ if eq $labels.job \"api\" \"web\" }}yes{{ end }}",
                0.0,
                "yes",
            ),
            (
                "{{ if and $labels.job (not $labels.missing) }}ok{{ end }}",
                0.0,
                "ok",
            ),
            (
                "{{ range $k, $v := $labels }}{{ $k }}={{ $v }};{{ end }}",
                0.0,
                "instance=host-1.example.com:9090;job=api;",
            ),
            ("{{ range $externalLabels }}{{ . }}{{ end }}", 0.0, "eu-1"),
            (
                "{{ range query \"none\" }}x{{ else }}empty{{ end }}",
                0.0,
                "empty",
            ),
            (
                "{{ with query \"up\" }}{{ . | first | value }}{{ end }}",
                0.0,
                "1",
            ),
            ("{{ (query \"up\" | first).Labels.job }}", 0.0, "b"),
            ("{{ query \"up\" | first | label \"job\" }}", 0.0, "b"),
            (
                "{{ range query \"up\" | sortByLabel \"job\" }}{{ .Labels.job }}:{{ .Value }} {{ end }}",
                0.0,
                "a:0.25 b:1 ",
            ),
            ("{{ $x := 5 }}{{ $x }}{{ $x = 6 }}{{ $x }}", 0.0, "56"),
            ("a  {{- \"b\" -}}  c", 0.0, "abc"),
            ("a{{/* note */}}b", 0.0, "ab"),
            (
                "{{ len $labels }} {{ index $labels \"job\" }}",
                0.0,
                "2 api",
            ),
            ("{{ `raw\\n` }}", 0.0, "raw\\n"),
            // Errors are reported in the text, never a panic.
            (
                "{{ $labels.job",
                0.0,
                "<error expanding template: template: __alert_A:1: unclosed action>",
            ),
            (
                "{{ nosuch 1 }}",
                0.0,
                "<error expanding template: template: __alert_A:1: function \"nosuch\" not defined>",
            ),
            (
                "{{ if 1 }}x",
                0.0,
                "<error expanding template: template: __alert_A:1: unexpected EOF in if>",
            ),
            (
                "x\n{{ $.labels.job }}",
                0.0,
                "<error expanding template: template: __alert_A:2: executing \"__alert_A\": can't evaluate field labels in type struct>",
            ),
            (
                "{{ query \"none\" | first }}",
                0.0,
                "<error expanding template: template: __alert_A:1: executing \"__alert_A\": error calling first: first() called on vector with no elements>",
            ),
            (
                "{{ query \"bad\" }}",
                0.0,
                "<error expanding template: template: __alert_A:1: executing \"__alert_A\": error calling query: bad query \"bad\">",
            ),
            (
                "{{ $nope }}",
                0.0,
                "<error expanding template: template: __alert_A:1: executing \"__alert_A\": undefined variable: $nope>",
            ),
        ];
        for (text, value, want) in cases {
            assert_eq!(expand(text, *value), *want, "template {text:?}");
        }
    }

    #[test]
    fn go_float_formatting() {
        let cases: &[(f64, Option<usize>, &str)] = &[
            (0.0, None, "0"),
            (1.0, None, "1"),
            (-2.5, None, "-2.5"),
            (1e21, None, "1e+21"),
            (1234567.0, None, "1.234567e+06"),
            (0.0001, None, "0.0001"),
            (0.00001, None, "1e-05"),
            (f64::NAN, None, "NaN"),
            (f64::NEG_INFINITY, None, "-Inf"),
            (1234.5678, Some(4), "1235"),
            (100000.0, Some(4), "1e+05"),
            (1.5, Some(4), "1.5"),
            (999.99, Some(4), "1000"),
        ];
        for (v, p, want) in cases {
            assert_eq!(go_fmt_g(*v, *p), *want, "{v} {p:?}");
        }
    }
}
