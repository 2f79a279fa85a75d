//! The condition language of analytics rules ([`crate::rules`]): comparisons, `and`, `or`,
//! `not`, arithmetic on an event's JSON fields (`d.temp > 30 and d.hum < 20`) and window
//! aggregates per device (`avg(d.temp) over 5m > 30`).
//!
//! Parsed with the `nom` combinator crate (already in the build through the TLS stack's
//! certificate parser, no proc macros, errors carry the input where they arose, so a
//! refusal names the position in the expression). Evaluation is a walk of the tree over
//! the event's parsed JSON and the aggregates' current values; a missing field or a value
//! of the wrong type is an [`EvalError`], which the rule counts and moves on from.

use nom::branch::alt;
use nom::bytes::complete::{tag, take_while, take_while1};
use nom::character::complete::{char, digit1, multispace0};
use nom::combinator::{map, opt, recognize};
use nom::sequence::{delimited, pair, preceded, tuple};
use nom::IResult;
use serde_json::Value as Json;

/// Longest expression accepted.
pub const MAX_EXPRESSION: usize = 2048;
/// Deepest nesting of parentheses and `not`.
const MAX_DEPTH: usize = 32;
/// Most binary operators in one condition (bounds the tree's depth when evaluated).
pub const MAX_OPERATORS: usize = 256;
/// Most aggregates in one condition.
pub const MAX_AGGREGATES: usize = 8;
/// Longest window.
pub const MAX_WINDOW_MS: u64 = 24 * 3600 * 1000;

/// One step of a field's path: an object key or an array index.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Key(String),
    Index(usize),
}

/// A field of the event's JSON, e.g. `d.temp` or `d.sensors[0].value`.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldPath(pub Vec<Step>);

impl std::fmt::Display for FieldPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, step) in self.0.iter().enumerate() {
            match step {
                Step::Key(k) if i == 0 => write!(f, "{k}")?,
                Step::Key(k) => write!(f, ".{k}")?,
                Step::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

impl FieldPath {
    /// The value at this path in `json`, if any.
    pub fn lookup<'j>(&self, json: &'j Json) -> Option<&'j Json> {
        self.0.iter().try_fold(json, |v, step| match step {
            Step::Key(k) => v.get(k.as_str()),
            Step::Index(n) => v.get(*n),
        })
    }

    /// The number at this path in `json`.
    pub fn number(&self, json: &Json) -> Result<f64, EvalError> {
        match self.lookup(json) {
            None => Err(EvalError::Missing(self.to_string())),
            Some(v) => v.as_f64().ok_or_else(|| EvalError::NotNumber(self.to_string())),
        }
    }
}

/// What a window aggregates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggFunc {
    Avg,
    Count,
    Min,
    Max,
    Last,
    Sum,
}

/// A window aggregate of one numeric field, per device: `avg(d.temp) over 5m`.
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregate {
    pub func: AggFunc,
    pub field: FieldPath,
    pub span_ms: u64,
}

/// A binary operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

/// A parsed expression; aggregates are referred to by their index in [`Condition`].
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Num(f64),
    Str(String),
    Bool(bool),
    Field(FieldPath),
    Agg(usize),
    Not(Box<Expr>),
    Neg(Box<Expr>),
    Bin(Op, Box<Expr>, Box<Expr>),
}

/// A value during evaluation.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Num(f64),
    Str(String),
    Bool(bool),
}

/// Why an expression could not be evaluated on an event.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    #[error("the event has no field {0}")]
    Missing(String),
    #[error("the event's field {0} is not a number")]
    NotNumber(String),
    #[error("the event's field {0} is an object, an array or null")]
    NotScalar(String),
    #[error("{0}")]
    Type(String),
    #[error("the window of {0} has no values")]
    EmptyWindow(String),
}

/// Why an expression was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message} at position {position} of the condition")]
pub struct ParseError {
    /// 0-based character offset.
    pub position: usize,
    pub message: String,
}

/// A rule's condition: the expression and the window aggregates it uses.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub expr: Expr,
    pub aggregates: Vec<Aggregate>,
}

type Res<'a, T> = IResult<&'a str, T>;

fn ws<'a, T>(inner: impl FnMut(&'a str) -> Res<'a, T>) -> impl FnMut(&'a str) -> Res<'a, T> {
    delimited(multispace0, inner, multispace0)
}

/// A keyword: the word, not followed by an identifier character.
fn keyword<'a>(word: &'static str) -> impl FnMut(&'a str) -> Res<'a, &'a str> {
    move |i: &'a str| {
        let (rest, w) = tag(word)(i)?;
        if rest.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
            return Err(nom::Err::Error(nom::error::Error::new(i, nom::error::ErrorKind::Tag)));
        }
        Ok((rest, w))
    }
}

fn ident(i: &str) -> Res<'_, &str> {
    recognize(pair(
        take_while1(|c: char| c.is_ascii_alphabetic() || c == '_'),
        take_while(|c: char| c.is_ascii_alphanumeric() || c == '_'),
    ))(i)
}

fn field(i: &str) -> Res<'_, FieldPath> {
    let (mut rest, first) = ident(i)?;
    let mut steps = vec![Step::Key(first.to_string())];
    loop {
        if let Ok((r, k)) = preceded(char::<&str, nom::error::Error<&str>>('.'), ident)(rest) {
            steps.push(Step::Key(k.to_string()));
            rest = r;
        } else if let Ok((r, n)) = delimited(char::<&str, nom::error::Error<&str>>('['), digit1, char(']'))(rest) {
            let Ok(n) = n.parse() else {
                return Err(nom::Err::Failure(nom::error::Error::new(
                    rest,
                    nom::error::ErrorKind::Digit,
                )));
            };
            steps.push(Step::Index(n));
            rest = r;
        } else {
            return Ok((rest, FieldPath(steps)));
        }
    }
}

fn number(i: &str) -> Res<'_, f64> {
    let (rest, text) = recognize(tuple((
        digit1,
        opt(pair(char('.'), digit1)),
        opt(tuple((
            alt((char('e'), char('E'))),
            opt(alt((char('+'), char('-')))),
            digit1,
        ))),
    )))(i)?;
    match text.parse::<f64>() {
        Ok(n) if n.is_finite() => Ok((rest, n)),
        _ => Err(nom::Err::Failure(nom::error::Error::new(
            i,
            nom::error::ErrorKind::Float,
        ))),
    }
}

fn quoted(q: char, i: &str) -> Res<'_, String> {
    let (rest, body) = delimited(char(q), take_while(move |c| c != q), char(q))(i)?;
    Ok((rest, body.to_string()))
}

fn string(i: &str) -> Res<'_, String> {
    alt((|i| quoted('"', i), |i| quoted('\'', i)))(i)
}

/// `5m`, `30s`, `1h`, `500ms`, `1d`.
pub fn duration_ms(i: &str) -> Res<'_, u64> {
    let (rest, (n, unit)) = pair(digit1, alt((tag("ms"), tag("s"), tag("m"), tag("h"), tag("d"))))(i)?;
    let scale = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => 86_400_000,
    };
    let ms = n.parse::<u64>().ok().and_then(|n| n.checked_mul(scale));
    match ms {
        Some(ms) => Ok((rest, ms)),
        None => Err(nom::Err::Failure(nom::error::Error::new(
            i,
            nom::error::ErrorKind::Digit,
        ))),
    }
}

/// Parses a field path written alone (`d.temp`), as in a template.
pub fn parse_field(text: &str) -> Option<FieldPath> {
    match field(text) {
        Ok(("", path)) => Some(path),
        _ => None,
    }
}

/// Parses a duration written alone, as in a notification strategy (`"5m"`).
pub fn parse_duration(text: &str) -> Option<u64> {
    match duration_ms(text.trim()) {
        Ok(("", ms)) => Some(ms),
        _ => None,
    }
}

/// The parser: keeps the aggregates it met and how deep it is.
struct Parser<'s> {
    source: &'s str,
    aggregates: Vec<Aggregate>,
    depth: usize,
    operators: usize,
    /// The first error worth reporting (position, message).
    failure: Option<(usize, String)>,
}

fn err(i: &str) -> nom::Err<nom::error::Error<&str>> {
    nom::Err::Error(nom::error::Error::new(i, nom::error::ErrorKind::Verify))
}

impl<'s> Parser<'s> {
    fn fail(&mut self, at: &'s str, message: impl Into<String>) -> nom::Err<nom::error::Error<&'s str>> {
        if self.failure.is_none() {
            self.failure = Some((self.source.len() - at.len(), message.into()));
        }
        nom::Err::Failure(nom::error::Error::new(at, nom::error::ErrorKind::Verify))
    }

    fn binary(
        &mut self,
        i: &'s str,
        next: fn(&mut Self, &'s str) -> Res<'s, Expr>,
        ops: &[(&'static str, Op)],
        once: bool,
    ) -> Res<'s, Expr> {
        let (mut rest, mut left) = next(self, i)?;
        loop {
            let (r, _) = multispace0(rest)?;
            let Some((len, op)) = ops.iter().find_map(|(t, op)| {
                let word = t.starts_with(|c: char| c.is_ascii_alphabetic());
                let hit = if word { keyword(t)(r).is_ok() } else { r.starts_with(t) };
                hit.then_some((t.len(), *op))
            }) else {
                return Ok((rest, left));
            };
            self.operators += 1;
            if self.operators > MAX_OPERATORS {
                return Err(self.fail(r, format!("more than {MAX_OPERATORS} operators")));
            }
            let after = &r[len..];
            let (r2, right) = match next(self, after) {
                Ok(ok) => ok,
                Err(nom::Err::Error(_)) => {
                    let at = after.trim_start();
                    let message = match at.chars().next() {
                        None => "the condition ends where an operand was expected".to_string(),
                        Some(_) => format!("expected an operand at `{}`", at.chars().take(12).collect::<String>()),
                    };
                    return Err(self.fail(at, message));
                }
                Err(e) => return Err(e),
            };
            left = Expr::Bin(op, Box::new(left), Box::new(right));
            rest = r2;
            if once {
                return Ok((rest, left));
            }
        }
    }

    fn or(&mut self, i: &'s str) -> Res<'s, Expr> {
        self.binary(i, Self::and, &[("or", Op::Or), ("||", Op::Or)], false)
    }

    fn and(&mut self, i: &'s str) -> Res<'s, Expr> {
        self.binary(i, Self::not, &[("and", Op::And), ("&&", Op::And)], false)
    }

    fn not(&mut self, i: &'s str) -> Res<'s, Expr> {
        let (r, _) = multispace0(i)?;
        let bang = r.starts_with('!') && !r.starts_with("!=");
        let after = if bang {
            &r[1..]
        } else if let Ok((after, _)) = keyword("not")(r) {
            after
        } else {
            return self.comparison(r);
        };
        self.nested(r, |p| {
            let (rest, e) = p.not(after)?;
            Ok((rest, Expr::Not(Box::new(e))))
        })
    }

    fn nested(&mut self, at: &'s str, f: impl FnOnce(&mut Self) -> Res<'s, Expr>) -> Res<'s, Expr> {
        if self.depth >= MAX_DEPTH {
            return Err(self.fail(at, format!("nested more than {MAX_DEPTH} deep")));
        }
        self.depth += 1;
        let out = f(self);
        self.depth -= 1;
        out
    }

    fn comparison(&mut self, i: &'s str) -> Res<'s, Expr> {
        let ops = [
            ("==", Op::Eq),
            ("!=", Op::Ne),
            ("<=", Op::Le),
            (">=", Op::Ge),
            ("<", Op::Lt),
            (">", Op::Gt),
            ("=", Op::Eq),
        ];
        self.binary(i, Self::sum, &ops, true)
    }

    fn sum(&mut self, i: &'s str) -> Res<'s, Expr> {
        self.binary(i, Self::product, &[("+", Op::Add), ("-", Op::Sub)], false)
    }

    fn product(&mut self, i: &'s str) -> Res<'s, Expr> {
        self.binary(i, Self::unary, &[("*", Op::Mul), ("/", Op::Div), ("%", Op::Rem)], false)
    }

    fn unary(&mut self, i: &'s str) -> Res<'s, Expr> {
        let (r, _) = multispace0(i)?;
        if let Some(after) = r.strip_prefix('-') {
            return self.nested(r, |p| {
                let (rest, e) = p.unary(after)?;
                Ok((rest, Expr::Neg(Box::new(e))))
            });
        }
        self.primary(r)
    }

    fn primary(&mut self, i: &'s str) -> Res<'s, Expr> {
        if let Some(inner) = i.strip_prefix('(') {
            let (rest, e) = self.nested(i, |p| p.or(inner))?;
            let (rest, _) = multispace0(rest)?;
            return match rest.strip_prefix(')') {
                Some(rest) => Ok((rest, e)),
                None => Err(self.fail(rest, "expected `)`")),
            };
        }
        if i.starts_with(|c: char| c.is_ascii_digit()) {
            return match number(i) {
                Ok((rest, n)) => Ok((rest, Expr::Num(n))),
                Err(_) => Err(self.fail(i, "a number out of range")),
            };
        }
        if i.starts_with(['"', '\'']) {
            return match string(i) {
                Ok((rest, s)) => Ok((rest, Expr::Str(s))),
                Err(_) => Err(self.fail(i, "a string without its closing quote")),
            };
        }
        if let Ok((rest, b)) = alt((map(keyword("true"), |_| true), map(keyword("false"), |_| false)))(i) {
            return Ok((rest, Expr::Bool(b)));
        }
        let Ok((rest, path)) = field(i) else {
            return Err(err(i));
        };
        let (after_ws, _) = multispace0(rest)?;
        if let (Some(args), [Step::Key(name)]) = (after_ws.strip_prefix('('), path.0.as_slice()) {
            return self.aggregate(i, name, args);
        }
        Ok((rest, Expr::Field(path)))
    }

    fn aggregate(&mut self, at: &'s str, name: &str, args: &'s str) -> Res<'s, Expr> {
        let func = match name {
            "avg" => AggFunc::Avg,
            "count" => AggFunc::Count,
            "min" => AggFunc::Min,
            "max" => AggFunc::Max,
            "last" => AggFunc::Last,
            "sum" => AggFunc::Sum,
            _ => {
                return Err(self.fail(
                    at,
                    format!("unknown function `{name}` (avg, count, min, max, last, sum)"),
                ))
            }
        };
        let Ok((rest, path)) = ws(field)(args) else {
            return Err(self.fail(args.trim_start(), "expected a field, as in avg(d.temp) over 5m"));
        };
        let Some(rest) = rest.strip_prefix(')') else {
            return Err(self.fail(rest, "expected `)`"));
        };
        let Ok((rest, _)) = ws(keyword("over"))(rest) else {
            return Err(self.fail(
                rest.trim_start(),
                "expected `over` and a window, as in avg(d.temp) over 5m",
            ));
        };
        let (rest, span_ms) = match duration_ms(rest) {
            Ok((_, 0)) => return Err(self.fail(rest, "a window of 0")),
            Ok((r, ms)) if ms <= MAX_WINDOW_MS => (r, ms),
            Ok(_) | Err(nom::Err::Failure(_)) => return Err(self.fail(rest, "a window longer than 1d")),
            Err(_) => return Err(self.fail(rest, "expected a window such as 30s, 5m, 1h")),
        };
        if self.aggregates.len() >= MAX_AGGREGATES {
            return Err(self.fail(at, format!("more than {MAX_AGGREGATES} aggregates")));
        }
        let aggregate = Aggregate {
            func,
            field: path,
            span_ms,
        };
        let index = match self.aggregates.iter().position(|a| *a == aggregate) {
            Some(index) => index,
            None => {
                self.aggregates.push(aggregate);
                self.aggregates.len() - 1
            }
        };
        Ok((rest, Expr::Agg(index)))
    }
}

/// Parses a condition.
pub fn parse(source: &str) -> Result<Condition, ParseError> {
    if source.len() > MAX_EXPRESSION {
        return Err(ParseError {
            position: MAX_EXPRESSION,
            message: format!("the condition is longer than {MAX_EXPRESSION} bytes"),
        });
    }
    let mut parser = Parser {
        source,
        aggregates: Vec::new(),
        depth: 0,
        operators: 0,
        failure: None,
    };
    let result = parser.or(source);
    let position = |rest: &str| char_offset(source, source.len() - rest.len());
    match result {
        Ok((rest, expr)) => {
            let rest_trimmed = rest.trim_start();
            if rest_trimmed.is_empty() {
                return Ok(Condition {
                    expr,
                    aggregates: parser.aggregates,
                });
            }
            let token: String = rest_trimmed.chars().take(12).collect();
            Err(ParseError {
                position: position(rest_trimmed),
                message: format!("unexpected `{token}`"),
            })
        }
        Err(e) => Err(match parser.failure {
            Some((offset, message)) => ParseError {
                position: char_offset(source, offset),
                message,
            },
            None => {
                let at = match e {
                    nom::Err::Error(e) | nom::Err::Failure(e) => e.input,
                    nom::Err::Incomplete(_) => "",
                };
                let at = at.trim_start();
                let message = if at.is_empty() {
                    "the condition ends where an operand was expected".to_string()
                } else {
                    let token: String = at.chars().take(12).collect();
                    format!("expected a number, a string, a field or `(` at `{token}`")
                };
                ParseError {
                    position: position(at),
                    message,
                }
            }
        }),
    }
}

/// The character index of byte `offset` of `source`.
fn char_offset(source: &str, offset: usize) -> usize {
    source.get(..offset).map_or(offset, |s| s.chars().count())
}

fn describe(e: &Expr) -> String {
    match e {
        Expr::Field(p) => p.to_string(),
        Expr::Num(n) => n.to_string(),
        Expr::Str(s) => format!("{s:?}"),
        Expr::Bool(b) => b.to_string(),
        _ => "an operand".to_string(),
    }
}

impl Expr {
    /// Evaluates the expression on `event`, the aggregates' values in `aggs`.
    pub fn eval(&self, event: &Json, aggs: &[Option<f64>], names: &[Aggregate]) -> Result<Value, EvalError> {
        match self {
            Expr::Num(n) => Ok(Value::Num(*n)),
            Expr::Str(s) => Ok(Value::Str(s.clone())),
            Expr::Bool(b) => Ok(Value::Bool(*b)),
            Expr::Field(path) => match path.lookup(event) {
                None => Err(EvalError::Missing(path.to_string())),
                Some(Json::Number(n)) => n
                    .as_f64()
                    .map(Value::Num)
                    .ok_or_else(|| EvalError::NotNumber(path.to_string())),
                Some(Json::String(s)) => Ok(Value::Str(s.clone())),
                Some(Json::Bool(b)) => Ok(Value::Bool(*b)),
                Some(_) => Err(EvalError::NotScalar(path.to_string())),
            },
            Expr::Agg(i) => match aggs.get(*i).copied().flatten() {
                Some(v) => Ok(Value::Num(v)),
                None => Err(EvalError::EmptyWindow(
                    names.get(*i).map_or_else(String::new, |a| a.field.to_string()),
                )),
            },
            Expr::Not(e) => match e.eval(event, aggs, names)? {
                Value::Bool(b) => Ok(Value::Bool(!b)),
                _ => Err(EvalError::Type(format!(
                    "`not` needs true or false, not {}",
                    describe(e)
                ))),
            },
            Expr::Neg(e) => Ok(Value::Num(-num(e, e.eval(event, aggs, names)?)?)),
            Expr::Bin(op, l, r) => self.binary(*op, l, r, event, aggs, names),
        }
    }

    fn binary(
        &self,
        op: Op,
        l: &Expr,
        r: &Expr,
        event: &Json,
        aggs: &[Option<f64>],
        names: &[Aggregate],
    ) -> Result<Value, EvalError> {
        let truth = |e: &Expr, v: Value| match v {
            Value::Bool(b) => Ok(b),
            _ => Err(EvalError::Type(format!(
                "`and`/`or` need true or false, not {}",
                describe(e)
            ))),
        };
        match op {
            Op::And => {
                let left = truth(l, l.eval(event, aggs, names)?)?;
                return Ok(Value::Bool(left && truth(r, r.eval(event, aggs, names)?)?));
            }
            Op::Or => {
                let left = truth(l, l.eval(event, aggs, names)?)?;
                return Ok(Value::Bool(left || truth(r, r.eval(event, aggs, names)?)?));
            }
            _ => {}
        }
        let (a, b) = (l.eval(event, aggs, names)?, r.eval(event, aggs, names)?);
        let ordering = |a: &Value, b: &Value| match (a, b) {
            (Value::Num(x), Value::Num(y)) => Ok(x.partial_cmp(y)),
            (Value::Str(x), Value::Str(y)) => Ok(Some(x.cmp(y))),
            (Value::Bool(x), Value::Bool(y)) if matches!(op, Op::Eq | Op::Ne) => Ok(Some(x.cmp(y))),
            (x, _) => {
                let culprit = if matches!(x, Value::Num(_)) { r } else { l };
                Err(mismatch(culprit, l, r))
            }
        };
        use std::cmp::Ordering::{Equal, Greater, Less};
        let cmp = |f: fn(Option<std::cmp::Ordering>) -> bool| ordering(&a, &b).map(|o| Value::Bool(f(o)));
        match op {
            Op::Eq => cmp(|o| o == Some(Equal)),
            Op::Ne => cmp(|o| o != Some(Equal)),
            Op::Lt => cmp(|o| o == Some(Less)),
            Op::Le => cmp(|o| matches!(o, Some(Less | Equal))),
            Op::Gt => cmp(|o| o == Some(Greater)),
            Op::Ge => cmp(|o| matches!(o, Some(Greater | Equal))),
            _ => {
                let (x, y) = (num(l, a)?, num(r, b)?);
                let v = match op {
                    Op::Add => x + y,
                    Op::Sub => x - y,
                    Op::Mul => x * y,
                    Op::Div if y == 0.0 => return Err(EvalError::Type("division by zero".into())),
                    Op::Div => x / y,
                    Op::Rem if y == 0.0 => return Err(EvalError::Type("remainder by zero".into())),
                    _ => x % y,
                };
                Ok(Value::Num(v))
            }
        }
    }
}

fn mismatch(culprit: &Expr, l: &Expr, r: &Expr) -> EvalError {
    match culprit {
        Expr::Field(p) => EvalError::NotNumber(p.to_string()),
        _ => EvalError::Type(format!("{} and {} cannot be compared", describe(l), describe(r))),
    }
}

fn num(e: &Expr, v: Value) -> Result<f64, EvalError> {
    match (v, e) {
        (Value::Num(n), _) => Ok(n),
        (_, Expr::Field(p)) => Err(EvalError::NotNumber(p.to_string())),
        _ => Err(EvalError::Type(format!(
            "arithmetic needs numbers, not {}",
            describe(e)
        ))),
    }
}

impl Condition {
    /// Whether the condition holds for `event` with the aggregates' values `aggs`.
    pub fn holds(&self, event: &Json, aggs: &[Option<f64>]) -> Result<bool, EvalError> {
        match self.expr.eval(event, aggs, &self.aggregates)? {
            Value::Bool(b) => Ok(b),
            _ => Err(EvalError::Type("the condition is not true or false".into())),
        }
    }
}
