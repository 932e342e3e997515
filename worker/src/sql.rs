//! HStreamDB's connector statements (reference §5.13) plus the stream
//! statements a pipeline needs and `DESCRIBE CONNECTOR`, parsed into
//! [`Statement`]s. Errors carry the byte position they point at.
//!
//! ```text
//! CREATE SOURCE CONNECTOR name FROM target [IF NOT EXIST] WITH ("k" = v, …);
//! CREATE SINK CONNECTOR name TO target [IF NOT EXIST] WITH ("k" = v, …);
//! SHOW CONNECTORS;  PAUSE CONNECTOR name;  RESUME CONNECTOR name;
//! DROP CONNECTOR name [IF EXISTS];  DESCRIBE CONNECTOR name;
//! CREATE STREAM name [WITH (SHARD_COUNT = n, REPLICATE = n)];  SHOW STREAMS;  DROP STREAM name [IF EXISTS];
//! ```
//! Keywords are case-insensitive; option keys are quoted strings or bare
//! identifiers; values are strings ('…' or "…"), numbers, TRUE/FALSE or NULL.

use serde_json::{Map, Value};

/// One parsed statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    /// `CREATE SOURCE|SINK CONNECTOR`.
    CreateConnector {
        /// `SOURCE` or `SINK`.
        kind: &'static str,
        /// Connector name.
        name: String,
        /// HServer target (`FROM`/`TO`).
        target: String,
        /// `IF NOT EXIST`: an existing connector is not an error.
        if_not_exist: bool,
        /// The `WITH` options as a JSON object.
        options: Map<String, Value>,
    },
    /// `SHOW CONNECTORS`.
    ShowConnectors,
    /// `PAUSE CONNECTOR name`.
    PauseConnector(String),
    /// `RESUME CONNECTOR name`.
    ResumeConnector(String),
    /// `DROP CONNECTOR name [IF EXISTS]`.
    DropConnector {
        /// Connector name.
        name: String,
        /// A missing connector is not an error.
        if_exists: bool,
    },
    /// `DESCRIBE CONNECTOR name`.
    DescribeConnector(String),
    /// `CREATE STREAM name [WITH (SHARD_COUNT = n, REPLICATE = n)]`.
    CreateStream {
        /// Stream name.
        name: String,
        /// Shards (default 1).
        shard_count: u32,
        /// Replication factor (default 1).
        replicate: u32,
    },
    /// `SHOW STREAMS`.
    ShowStreams,
    /// `DROP STREAM name [IF EXISTS]`.
    DropStream {
        /// Stream name.
        name: String,
        /// A missing stream is not an error.
        if_exists: bool,
    },
}

/// A syntax error at a byte position of the statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlError {
    /// Byte offset the error points at.
    pub position: usize,
    /// What is wrong and what was expected.
    pub message: String,
}

impl SqlError {
    /// `line L, column C: message`, the statement line, and a caret under the position.
    pub fn render(&self, sql: &str) -> String {
        let pos = self.position.min(sql.len());
        let line_start = sql[..pos].rfind('\n').map_or(0, |i| i + 1);
        let line_end = sql[pos..].find('\n').map_or(sql.len(), |i| pos + i);
        let line_no = sql[..pos].matches('\n').count() + 1;
        let col = sql[line_start..pos].chars().count() + 1;
        format!(
            "syntax error at line {line_no}, column {col}: {}\n  {}\n  {}^",
            self.message,
            &sql[line_start..line_end],
            " ".repeat(col - 1)
        )
    }
}

impl std::fmt::Display for SqlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "at byte {}: {}", self.position, self.message)
    }
}

impl std::error::Error for SqlError {}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Num(serde_json::Number),
    Sym(char),
    End,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Word(w) => format!("`{w}`"),
            Tok::Str(s) => format!("string {s:?}"),
            Tok::Num(n) => format!("number {n}"),
            Tok::Sym(c) => format!("`{c}`"),
            Tok::End => "the end of the statement".into(),
        }
    }
}

fn tokenize(sql: &str) -> Result<Vec<(Tok, usize)>, SqlError> {
    let mut out = Vec::new();
    let chars: Vec<(usize, char)> = sql.char_indices().collect();
    let mut i = 0;
    let at = |i: usize| chars.get(i).map_or(sql.len(), |c| c.0);
    while i < chars.len() {
        let (pos, c) = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '-' && chars.get(i + 1).is_some_and(|c| c.1 == '-') {
            while i < chars.len() && chars[i].1 != '\n' {
                i += 1;
            }
        } else if c == '"' || c == '\'' || c == '`' {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => {
                        return Err(SqlError {
                            position: pos,
                            message: format!("unterminated {c}…{c} string; close it with {c}"),
                        });
                    }
                    Some(&(_, ch)) if ch == c => {
                        if chars.get(i + 1).is_some_and(|n| n.1 == c) {
                            s.push(c);
                            i += 2;
                        } else {
                            i += 1;
                            break;
                        }
                    }
                    Some(&(_, '\\')) if chars.get(i + 1).is_some() => {
                        let n = chars[i + 1].1;
                        s.push(match n {
                            'n' => '\n',
                            't' => '\t',
                            other => other,
                        });
                        i += 2;
                    }
                    Some(&(_, ch)) => {
                        s.push(ch);
                        i += 1;
                    }
                }
            }
            // Backquotes quote identifiers.
            out.push((if c == '`' { Tok::Word(s) } else { Tok::Str(s) }, pos));
        } else if c.is_ascii_digit()
            || (c == '-' && chars.get(i + 1).is_some_and(|n| n.1.is_ascii_digit()))
        {
            let start = i;
            i += 1;
            while chars.get(i).is_some_and(|n| {
                let after_exponent = chars[i - 1].1.eq_ignore_ascii_case(&'e');
                n.1.is_ascii_alphanumeric()
                    || n.1 == '.'
                    || (matches!(n.1, '+' | '-') && after_exponent)
            }) {
                i += 1;
            }
            let text = &sql[pos..at(i)];
            let num = text
                .parse::<i64>()
                .ok()
                .map(serde_json::Number::from)
                .or_else(|| {
                    text.parse::<f64>()
                        .ok()
                        .and_then(serde_json::Number::from_f64)
                });
            match num {
                Some(n) => out.push((Tok::Num(n), pos)),
                None => {
                    return Err(SqlError {
                        position: at(start),
                        message: format!("`{text}` is not a number"),
                    });
                }
            }
        } else if c.is_alphabetic() || c == '_' {
            i += 1;
            while chars
                .get(i)
                .is_some_and(|n| n.1.is_alphanumeric() || matches!(n.1, '_' | '-' | '.'))
            {
                i += 1;
            }
            out.push((Tok::Word(sql[pos..at(i)].to_string()), pos));
        } else if matches!(c, '(' | ')' | ',' | '=' | ';') {
            out.push((Tok::Sym(c), pos));
            i += 1;
        } else {
            return Err(SqlError {
                position: pos,
                message: format!("unexpected character {c:?}"),
            });
        }
    }
    out.push((Tok::End, sql.len()));
    Ok(out)
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    i: usize,
}

impl Parser {
    fn peek(&self) -> &(Tok, usize) {
        &self.toks[self.i.min(self.toks.len() - 1)]
    }

    fn err<T>(&self, expected: &str) -> Result<T, SqlError> {
        let (tok, pos) = self.peek();
        Err(SqlError {
            position: *pos,
            message: format!("expected {expected}, found {}", tok.describe()),
        })
    }

    fn is_kw(&self, kw: &str) -> bool {
        matches!(&self.peek().0, Tok::Word(w) if w.eq_ignore_ascii_case(kw))
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        let yes = self.is_kw(kw);
        if yes {
            self.i += 1;
        }
        yes
    }

    fn kw(&mut self, kw: &str) -> Result<(), SqlError> {
        if self.eat_kw(kw) {
            Ok(())
        } else {
            self.err(kw)
        }
    }

    fn kw_of(&mut self, kws: &[&str]) -> Result<String, SqlError> {
        for k in kws {
            if self.eat_kw(k) {
                return Ok(k.to_string());
            }
        }
        self.err(&kws.join(" or "))
    }

    fn ident(&mut self, what: &str) -> Result<String, SqlError> {
        match self.peek().0.clone() {
            Tok::Word(w) => {
                self.i += 1;
                Ok(w)
            }
            _ => self.err(what),
        }
    }

    fn sym(&mut self, c: char) -> Result<(), SqlError> {
        if self.peek().0 == Tok::Sym(c) {
            self.i += 1;
            Ok(())
        } else {
            self.err(&format!("`{c}`"))
        }
    }

    fn value(&mut self) -> Result<Value, SqlError> {
        match self.peek().0.clone() {
            Tok::Str(s) => {
                self.i += 1;
                Ok(Value::String(s))
            }
            Tok::Num(n) => {
                self.i += 1;
                Ok(Value::Number(n))
            }
            Tok::Word(w) if w.eq_ignore_ascii_case("true") => {
                self.i += 1;
                Ok(Value::Bool(true))
            }
            Tok::Word(w) if w.eq_ignore_ascii_case("false") => {
                self.i += 1;
                Ok(Value::Bool(false))
            }
            Tok::Word(w) if w.eq_ignore_ascii_case("null") => {
                self.i += 1;
                Ok(Value::Null)
            }
            _ => self.err("a value (a 'string', a number, TRUE, FALSE or NULL)"),
        }
    }

    /// `( key = value, … )`, keys quoted or bare; duplicate keys are an error.
    fn options(&mut self) -> Result<Vec<(String, usize, Value)>, SqlError> {
        self.sym('(')?;
        let mut out: Vec<(String, usize, Value)> = Vec::new();
        if self.peek().0 == Tok::Sym(')') {
            self.i += 1;
            return Ok(out);
        }
        loop {
            let (tok, pos) = self.peek().clone();
            let key = match tok {
                Tok::Str(s) | Tok::Word(s) => {
                    self.i += 1;
                    s
                }
                _ => return self.err("an option name, e.g. \"host\""),
            };
            if out.iter().any(|(k, _, _)| *k == key) {
                return Err(SqlError {
                    position: pos,
                    message: format!("option {key:?} is given twice"),
                });
            }
            self.sym('=')?;
            let v = self.value()?;
            out.push((key, pos, v));
            if self.peek().0 == Tok::Sym(',') {
                self.i += 1;
                continue;
            }
            self.sym(')')?;
            return Ok(out);
        }
    }

    fn end(&mut self) -> Result<(), SqlError> {
        if self.peek().0 == Tok::Sym(';') {
            self.i += 1;
        }
        match self.peek().0 {
            Tok::End => Ok(()),
            _ => self.err("the end of the statement (one statement at a time)"),
        }
    }

    fn statement(&mut self) -> Result<Statement, SqlError> {
        let verb = self.kw_of(&[
            "CREATE", "SHOW", "PAUSE", "RESUME", "DROP", "DESCRIBE", "DESC",
        ])?;
        let stmt = match verb.as_str() {
            "CREATE" => self.create()?,
            "SHOW" => match self.kw_of(&["CONNECTORS", "STREAMS"])?.as_str() {
                "CONNECTORS" => Statement::ShowConnectors,
                _ => Statement::ShowStreams,
            },
            "PAUSE" => {
                self.kw("CONNECTOR")?;
                Statement::PauseConnector(self.ident("a connector name")?)
            }
            "RESUME" => {
                self.kw("CONNECTOR")?;
                Statement::ResumeConnector(self.ident("a connector name")?)
            }
            "DROP" => {
                let what = self.kw_of(&["CONNECTOR", "STREAM"])?;
                let name = self.ident(&format!("a {} name", what.to_lowercase()))?;
                let if_exists = if self.eat_kw("IF") {
                    self.kw("EXISTS")?;
                    true
                } else {
                    false
                };
                if what == "CONNECTOR" {
                    Statement::DropConnector { name, if_exists }
                } else {
                    Statement::DropStream { name, if_exists }
                }
            }
            _ => {
                self.kw("CONNECTOR")?;
                Statement::DescribeConnector(self.ident("a connector name")?)
            }
        };
        self.end()?;
        Ok(stmt)
    }

    fn create(&mut self) -> Result<Statement, SqlError> {
        let what = self.kw_of(&["SOURCE", "SINK", "STREAM"])?;
        if what == "STREAM" {
            let name = self.ident("a stream name")?;
            let (mut shard_count, mut replicate) = (1u32, 1u32);
            if self.eat_kw("WITH") {
                for (key, pos, v) in self.options()? {
                    let n = v
                        .as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .filter(|n| *n >= 1);
                    let slot = match key.to_ascii_uppercase().as_str() {
                        "SHARD_COUNT" => &mut shard_count,
                        "REPLICATE" => &mut replicate,
                        _ => {
                            return Err(SqlError {
                                position: pos,
                                message: format!(
                                    "unknown stream option {key:?}; use SHARD_COUNT or REPLICATE"
                                ),
                            });
                        }
                    };
                    *slot = n.ok_or_else(|| SqlError {
                        position: pos,
                        message: format!("{key} must be a positive integer, got {v}"),
                    })?;
                }
            }
            return Ok(Statement::CreateStream {
                name,
                shard_count,
                replicate,
            });
        }
        self.kw("CONNECTOR")?;
        let name = self.ident("a connector name")?;
        let kind = if what == "SOURCE" {
            self.kw("FROM")?;
            "SOURCE"
        } else {
            self.kw("TO")?;
            "SINK"
        };
        let target = self.ident("a target, e.g. mysql, postgresql, generator, blackhole")?;
        let if_not_exist = if self.eat_kw("IF") {
            self.kw("NOT")?;
            self.kw_of(&["EXIST", "EXISTS"])?;
            true
        } else {
            false
        };
        self.kw("WITH")?;
        let options = self
            .options()?
            .into_iter()
            .map(|(k, _, v)| (k, v))
            .collect();
        Ok(Statement::CreateConnector {
            kind,
            name,
            target: target.to_lowercase(),
            if_not_exist,
            options,
        })
    }
}

/// Parses one statement (a trailing `;` is optional).
pub fn parse(sql: &str) -> Result<Statement, SqlError> {
    let mut p = Parser {
        toks: tokenize(sql)?,
        i: 0,
    };
    p.statement()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hserver_create_source_statement() {
        let s = parse(r#"create source connector source01 from mysql with ("host" = "mysql-s1", "port" = 3306, "ssl" = false, "ratio" = 0.5, "stream" = 'stream01');"#).unwrap();
        let Statement::CreateConnector {
            kind,
            name,
            target,
            if_not_exist,
            options,
        } = s
        else {
            panic!("{s:?}")
        };
        assert_eq!(
            (kind, name.as_str(), target.as_str(), if_not_exist),
            ("SOURCE", "source01", "mysql", false)
        );
        assert_eq!(
            Value::Object(options),
            json!({"host": "mysql-s1", "port": 3306, "ssl": false, "ratio": 0.5, "stream": "stream01"})
        );
    }

    #[test]
    fn sink_with_if_not_exist_and_bare_keys() {
        let s = parse("CREATE SINK CONNECTOR s-1 TO blackhole IF NOT EXIST WITH (stream = 's', task.error.maxRetries = 3)").unwrap();
        assert!(
            matches!(s, Statement::CreateConnector { kind: "SINK", if_not_exist: true, ref options, .. } if options["task.error.maxRetries"] == 3)
        );
    }

    #[test]
    fn other_statements() {
        assert_eq!(
            parse("show connectors;").unwrap(),
            Statement::ShowConnectors
        );
        assert_eq!(
            parse("PAUSE CONNECTOR c1").unwrap(),
            Statement::PauseConnector("c1".into())
        );
        assert_eq!(
            parse("resume connector c1;").unwrap(),
            Statement::ResumeConnector("c1".into())
        );
        assert_eq!(
            parse("DESCRIBE CONNECTOR c1").unwrap(),
            Statement::DescribeConnector("c1".into())
        );
        assert_eq!(
            parse("drop connector c1 if exists").unwrap(),
            Statement::DropConnector {
                name: "c1".into(),
                if_exists: true
            }
        );
        assert_eq!(
            parse("CREATE STREAM s WITH (SHARD_COUNT = 4);").unwrap(),
            Statement::CreateStream {
                name: "s".into(),
                shard_count: 4,
                replicate: 1
            }
        );
        assert_eq!(parse("SHOW STREAMS").unwrap(), Statement::ShowStreams);
        assert_eq!(
            parse("DROP STREAM s").unwrap(),
            Statement::DropStream {
                name: "s".into(),
                if_exists: false
            }
        );
    }

    #[test]
    fn errors_point_at_the_offending_token() {
        let sql = "CREATE SOURCE CONNECTOR c1 TO mysql WITH (\"a\" = 1)";
        let e = parse(sql).unwrap_err();
        assert_eq!(e.position, sql.find(" TO ").unwrap() + 1);
        assert!(
            e.message.contains("expected FROM, found `TO`"),
            "{}",
            e.message
        );
        let r = e.render(sql);
        assert!(r.starts_with("syntax error at line 1, column 28"), "{r}");
        assert!(r.ends_with(&format!("{}^", " ".repeat(2 + 27))), "{r}");
        let e = parse("CREATE SINK CONNECTOR c TO pg WITH (\"a\" = )").unwrap_err();
        assert!(e.message.contains("expected a value"), "{}", e.message);
        let e = parse("SHOW CONNECTORS; SHOW STREAMS").unwrap_err();
        assert!(e.message.contains("one statement"), "{}", e.message);
        assert!(
            parse("CREATE SINK CONNECTOR c TO pg WITH (\"a\" = 'x")
                .unwrap_err()
                .message
                .contains("unterminated")
        );
        assert!(
            parse("CREATE STREAM s WITH (SHARDS = 2)")
                .unwrap_err()
                .message
                .contains("SHARD_COUNT")
        );
    }
}
