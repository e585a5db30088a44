//! Where a value stands in a bash script, as far as the shell is concerned.
//!
//! reins never puts a substituted value into a script's text: each `{{...}}` becomes a
//! reference to an environment variable (see [`super::template::Renderer::render_script`]).
//! Which reference depends on where it stands, and in a few places no reference is safe or
//! meaningful. This module finds that out. It reads a script in which every value is a
//! *slot* ([`slot`]: a private-use character, a number, another private-use character, a
//! run that no shell treats specially) and says, for each slot, its [`Place`].
//!
//! The scanner follows the shell's own grammar as far as quoting goes: single quotes,
//! `$'...'`, double quotes, backslashes, `$(...)`, backticks, `${...}`, `$((...))`,
//! `((...))`, `$[...]`, comments, heredocs (quoted or not, `<<-` stripping tabs, several on a
//! line), `case` patterns, and the commands whose words the shell evaluates as arithmetic
//! (`let`, `declare -i`, `[[ ... -eq ... ]]`, array subscripts). It runs in one pass, in time
//! linear in the script.

/// The character that opens a slot.
pub const SLOT_OPEN: char = '\u{E000}';
/// The character that closes a slot.
pub const SLOT_CLOSE: char = '\u{E001}';
const OPEN: &[u8] = "\u{E000}".as_bytes();
const CLOSE: &[u8] = "\u{E001}".as_bytes();

/// The slot of value number `n`.
pub fn slot(n: usize) -> String {
    format!("{SLOT_OPEN}{n}{SLOT_CLOSE}")
}

/// Where a value stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// Where the shell reads a word: the value is written `"$VAR"`.
    Word,
    /// Inside double quotes or an unquoted heredoc: the value is written `${VAR}`.
    Quoted,
    /// Where no reference is safe or meaningful.
    Refused(Refusal),
}

/// A place where a value cannot go, even as a variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `$(( ))`, `(( ))`, `$[ ]`: bash evaluates a variable's value as an expression there,
    /// and `a[$(cmd)]` in it runs `cmd`.
    Arithmetic,
    /// An array subscript, `a[...]`: evaluated as arithmetic.
    Subscript,
    /// An operand of `-eq`, `-lt`... (or `-v`) inside `[[ ]]`: evaluated as arithmetic.
    TestOperand,
    /// A word of `let`: evaluated as arithmetic.
    Let,
    /// An assignment to an integer variable (`declare -i`): evaluated as arithmetic.
    Integer,
    /// A `declare -n` name reference: the value would name a variable.
    Nameref,
    /// Inside `'...'`: nothing expands there.
    SingleQuotes,
    /// Inside `$'...'`: nothing expands there.
    AnsiC,
    /// In the body of a quoted heredoc (`<<'EOF'`): nothing expands there.
    QuotedHeredoc,
    /// In a comment: the shell never reads it.
    Comment,
    /// Inside backticks, whose quoting rules differ from `$(...)`.
    Backticks,
    /// Inside `${...}`: offsets, patterns and subscripts there are evaluated.
    ParameterExpansion,
    /// Right after a `$`: the value would name the variable to read.
    AfterDollar,
    /// Right after a backslash, which would escape the reference's own quote or `$`.
    AfterBackslash,
}

impl Refusal {
    /// How the place is named in messages ("inside single quotes").
    pub fn describe(self) -> &'static str {
        match self {
            Refusal::Arithmetic => "inside an arithmetic expression",
            Refusal::Subscript => "inside an array subscript",
            Refusal::TestOperand => "an arithmetic operand of `[[ ]]`",
            Refusal::Let => "a word of `let`",
            Refusal::Integer => "assigned to an integer variable (`declare -i`)",
            Refusal::Nameref => "a `declare -n` name reference",
            Refusal::SingleQuotes => "inside single quotes",
            Refusal::AnsiC => "inside `$'...'`",
            Refusal::QuotedHeredoc => "inside a quoted heredoc",
            Refusal::Comment => "inside a comment",
            Refusal::Backticks => "inside backticks",
            Refusal::ParameterExpansion => "inside `${...}`",
            Refusal::AfterDollar => "right after a `$`",
            Refusal::AfterBackslash => "right after a backslash",
        }
    }

    /// Why, in a few words.
    pub fn why(self) -> &'static str {
        match self {
            Refusal::Arithmetic
            | Refusal::Subscript
            | Refusal::TestOperand
            | Refusal::Let
            | Refusal::Integer => {
                "bash evaluates a value there as an expression, and `a[$(cmd)]` in it runs `cmd`"
            }
            Refusal::Nameref | Refusal::AfterDollar => "the value would name a variable to read",
            Refusal::SingleQuotes | Refusal::AnsiC | Refusal::QuotedHeredoc => {
                "nothing expands there, so the value could not be read"
            }
            Refusal::Comment => "the shell never reads a comment",
            Refusal::Backticks => "quoting inside backticks follows other rules",
            Refusal::ParameterExpansion => {
                "offsets, patterns and subscripts there are evaluated by the shell"
            }
            Refusal::AfterBackslash => "the backslash would escape the reference itself",
        }
    }

    /// How to fix it; `var` is the value's environment variable when it has one.
    pub fn help(self, tag: &str, var: Option<&str>) -> String {
        let var = var.map(str::to_string).unwrap_or_else(|| "v".to_string());
        let read = if var == "v" {
            format!("v={tag}")
        } else {
            format!("v=\"${var}\"")
        };
        match self {
            Refusal::Arithmetic
            | Refusal::Subscript
            | Refusal::TestOperand
            | Refusal::Let
            | Refusal::Integer => format!(
                "check that it is a number first, then use the checked variable: `{read}; [[ $v =~ ^-?[0-9]+$ ]] || exit 1; echo $(( v + 1 ))`; to compare, `[ \"$v\" -eq 1 ]` is safe"
            ),
            Refusal::Nameref => "do not let a value name a variable; use it as a value".into(),
            Refusal::SingleQuotes | Refusal::AnsiC => format!(
                "close the quotes around it: `echo 'text: '{tag}` (reins passes the value as a variable; it is never code)"
            ),
            Refusal::QuotedHeredoc => format!(
                "unquote the heredoc's delimiter (`<<EOF`), where `{tag}` is read as a value and never as code, or print it outside the heredoc"
            ),
            Refusal::Comment => "remove it from the comment".into(),
            Refusal::Backticks => format!("write `$(...)` instead of backticks: `$(cmd {tag})`"),
            Refusal::ParameterExpansion => {
                format!("copy the value to a variable first: `{read}`, then use `${{v...}}`")
            }
            Refusal::AfterDollar => format!(
                "write `{tag}` alone: it already stands for the value, not for a variable's name"
            ),
            Refusal::AfterBackslash => format!(
                "remove the backslash; to print one, quote it: `echo '\\'{tag}`"
            ),
        }
    }
}

/// A slot found in a script: its number, its byte offset and length, and its place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    /// The number inside the slot.
    pub slot: usize,
    /// Byte offset of the slot.
    pub offset: usize,
    /// Byte length of the slot.
    pub len: usize,
    /// Where it stands.
    pub place: Place,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closer {
    /// The script itself.
    Top,
    /// `$(`, closed by `)`.
    Paren,
    /// `` ` ``.
    Backtick,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ArithEnd {
    /// `$((` or `((`, closed by `))`.
    DoubleParen,
    /// `$[`, closed by `]`.
    Bracket,
}

#[derive(Debug)]
enum FrameKind {
    Cmd(Box<Cmd>),
    Double,
    Single,
    AnsiC,
    Arith { depth: u32, end: ArithEnd },
    Param { depth: u32 },
    Heredoc(Heredoc),
}

#[derive(Debug, Clone)]
struct Heredoc {
    delimiter: String,
    strip_tabs: bool,
    quoted: bool,
}

/// A command context: the words of the current simple command, for the commands whose
/// words are arithmetic.
#[derive(Debug)]
struct Cmd {
    closer: Closer,
    word_start: bool,
    in_word: bool,
    word: String,
    word_slots: Vec<usize>,
    words: Vec<String>,
    /// Open `(` of subshells and array assignments.
    depth: u32,
    /// Open `case ... esac`.
    cases: u32,
    /// Inside `[[ ... ]]`: its words with the slots each holds.
    cond: Option<Vec<(String, Vec<usize>)>>,
}

impl Cmd {
    fn new(closer: Closer) -> Self {
        Cmd {
            closer,
            word_start: true,
            in_word: false,
            word: String::new(),
            word_slots: Vec::new(),
            words: Vec::new(),
            depth: 0,
            cases: 0,
            cond: None,
        }
    }

    /// What the command's own words make of a value in the current word.
    fn refusal(&self, integers: &std::collections::HashSet<String>) -> Option<Refusal> {
        if let Some(first) = self.words.first() {
            if first == "let" {
                return Some(Refusal::Let);
            }
            if matches!(
                first.as_str(),
                "declare" | "typeset" | "local" | "readonly" | "export"
            ) {
                for flag in self.words[1..].iter().filter(|w| is_flag(w)) {
                    if flag.contains('n') {
                        return Some(Refusal::Nameref);
                    }
                    if flag.contains('i') {
                        return Some(Refusal::Integer);
                    }
                }
            }
        }
        let name_len = identifier_len(&self.word);
        if name_len > 0 {
            let rest = &self.word[name_len..];
            if rest.starts_with('[') {
                let mut open = 0i32;
                for c in rest.chars() {
                    match c {
                        '[' => open += 1,
                        ']' => open -= 1,
                        _ => {}
                    }
                    if open == 0 {
                        break;
                    }
                }
                if open > 0 {
                    return Some(Refusal::Subscript);
                }
            }
            if (rest.starts_with('=') || rest.starts_with("+="))
                && integers.contains(&self.word[..name_len])
            {
                return Some(Refusal::Integer);
            }
        }
        None
    }

    /// The current word is over: record it.
    fn end_word(&mut self, integers: &mut std::collections::HashSet<String>) -> Vec<usize> {
        if !self.in_word {
            return Vec::new();
        }
        self.in_word = false;
        let word = std::mem::take(&mut self.word);
        let slots = std::mem::take(&mut self.word_slots);
        let mut refused = Vec::new();
        if let Some(cond) = &mut self.cond {
            if word == "]]" {
                let cond = self.cond.take().unwrap_or_default();
                for (k, (w, _)) in cond.iter().enumerate() {
                    let arithmetic =
                        matches!(w.as_str(), "-eq" | "-ne" | "-lt" | "-le" | "-gt" | "-ge");
                    if arithmetic && k > 0 {
                        refused.extend(cond[k - 1].1.iter().copied());
                    }
                    if arithmetic || w == "-v" {
                        if let Some((_, s)) = cond.get(k + 1) {
                            refused.extend(s.iter().copied());
                        }
                    }
                }
            } else {
                cond.push((word.clone(), slots));
            }
        }
        if self.words.is_empty() {
            match word.as_str() {
                "if" | "then" | "else" | "elif" | "fi" | "do" | "done" | "while" | "until"
                | "!" | "{" | "}" | "time" => return refused,
                "case" => self.cases += 1,
                "esac" => self.cases = self.cases.saturating_sub(1),
                "[[" => self.cond = Some(Vec::new()),
                _ => {}
            }
        }
        if let Some(first) = self.words.first() {
            let integer_declaration =
                matches!(first.as_str(), "declare" | "typeset" | "local" | "readonly")
                    && self.words[1..]
                        .iter()
                        .any(|w| is_flag(w) && w.contains('i'));
            if integer_declaration && !is_flag(&word) {
                let n = identifier_len(&word);
                if n > 0 {
                    integers.insert(word[..n].to_string());
                }
            }
        }
        self.words.push(word);
        refused
    }

    /// A command separator: the next word starts a new command.
    fn end_command(&mut self, integers: &mut std::collections::HashSet<String>) -> Vec<usize> {
        let refused = self.end_word(integers);
        if self.cond.is_none() {
            self.words.clear();
        }
        self.word_start = true;
        refused
    }

    fn push_char(&mut self, c: char) {
        self.word.push(c);
        self.in_word = true;
        self.word_start = false;
    }
}

fn is_flag(w: &str) -> bool {
    w.starts_with('-') && !w.starts_with("--") && w.len() > 1
}

/// Length of the shell identifier at the start of `s`.
fn identifier_len(s: &str) -> usize {
    let b = s.as_bytes();
    if b.first()
        .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_')
    {
        b.iter()
            .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
            .count()
    } else {
        0
    }
}

struct Frame {
    kind: FrameKind,
    /// A refusal that holds for everything inside this frame (an arithmetic expression
    /// encloses it, say).
    inherited: Option<Refusal>,
    /// The nearest enclosing frame in `[[ ]]`, whose current word this frame is part of.
    cond_owner: Option<usize>,
    /// For heredocs: true at the start of a body line.
    line_start: bool,
}

struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    stack: Vec<Frame>,
    found: Vec<Found>,
    pending: Vec<Heredoc>,
    integers: std::collections::HashSet<String>,
}

/// Every slot of `script`, in order, with its place.
pub fn places(script: &str) -> Vec<Found> {
    let mut s = Scanner {
        text: script,
        bytes: script.as_bytes(),
        stack: vec![Frame {
            kind: FrameKind::Cmd(Box::new(Cmd::new(Closer::Top))),
            inherited: None,
            cond_owner: None,
            line_start: false,
        }],
        found: Vec::new(),
        pending: Vec::new(),
        integers: Default::default(),
    };
    s.run();
    // The text may end in the middle of a word (`[[ ... ]]` with no newline after it).
    while !s.stack.is_empty() {
        s.end_word();
        s.stack.pop();
    }
    s.found
}

impl Scanner<'_> {
    fn top(&mut self) -> &mut Frame {
        // Never empty while scanning: `pop` keeps the script's own frame.
        let n = self.stack.len() - 1;
        &mut self.stack[n]
    }

    fn top_cmd(&mut self) -> Option<&mut Cmd> {
        match &mut self.top().kind {
            FrameKind::Cmd(c) => Some(c),
            _ => None,
        }
    }

    /// Opens a frame inside the current one.
    fn push(&mut self, kind: FrameKind, own: Option<Refusal>) {
        let n = self.stack.len() - 1;
        let integers = &self.integers;
        let parent = &mut self.stack[n];
        let mut inherited = parent.inherited;
        let mut cond_owner = parent.cond_owner;
        if let FrameKind::Cmd(cmd) = &mut parent.kind {
            inherited = inherited.or_else(|| cmd.refusal(integers));
            cmd.in_word = true;
            cmd.word_start = false;
            cmd.word.push('\u{1}');
            if cmd.cond.is_some() {
                cond_owner = Some(n);
            }
        }
        let line_start = matches!(kind, FrameKind::Heredoc(_));
        self.stack.push(Frame {
            kind,
            inherited: inherited.or(own),
            cond_owner,
            line_start,
        });
    }

    fn pop(&mut self) {
        if self.stack.len() > 1 {
            self.stack.pop();
        }
    }

    fn refuse(&mut self, slots: Vec<usize>, why: Refusal) {
        for k in slots {
            if let Some(f) = self.found.get_mut(k) {
                if !matches!(f.place, Place::Refused(_)) {
                    f.place = Place::Refused(why);
                }
            }
        }
    }

    fn end_command(&mut self) {
        let mut integers = std::mem::take(&mut self.integers);
        let refused = match self.top_cmd() {
            Some(c) => c.end_command(&mut integers),
            None => Vec::new(),
        };
        self.integers = integers;
        self.refuse(refused, Refusal::TestOperand);
    }

    fn end_word(&mut self) {
        let mut integers = std::mem::take(&mut self.integers);
        let refused = match self.top_cmd() {
            Some(c) => c.end_word(&mut integers),
            None => Vec::new(),
        };
        self.integers = integers;
        self.refuse(refused, Refusal::TestOperand);
    }

    /// Reads a slot at `i`; returns where the text goes on, or `None` if it is not a slot.
    fn slot_at(&self, i: usize) -> Option<(usize, usize)> {
        if !self.bytes[i..].starts_with(OPEN) {
            return None;
        }
        let start = i + OPEN.len();
        let digits = self.bytes[start..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        let end = start + digits;
        if digits == 0 || digits > 18 || !self.bytes[end..].starts_with(CLOSE) {
            return None;
        }
        let n = self.text[start..end].parse().ok()?;
        Some((n, end + CLOSE.len()))
    }

    fn record_slot(&mut self, n: usize, offset: usize, end: usize, before: Option<Refusal>) {
        let idx = self.found.len();
        let integers = &self.integers;
        let top = self.stack.len() - 1;
        let frame = &mut self.stack[top];
        let local = match &frame.kind {
            FrameKind::Single => Some(Refusal::SingleQuotes),
            FrameKind::AnsiC => Some(Refusal::AnsiC),
            FrameKind::Heredoc(h) if h.quoted => Some(Refusal::QuotedHeredoc),
            FrameKind::Arith { .. } => Some(Refusal::Arithmetic),
            FrameKind::Param { .. } => Some(Refusal::ParameterExpansion),
            FrameKind::Cmd(c) => c.refusal(integers),
            _ => None,
        };
        let quoted = matches!(frame.kind, FrameKind::Double | FrameKind::Heredoc(_));
        let place = match local.or(before).or(frame.inherited) {
            Some(r) => Place::Refused(r),
            None if quoted => Place::Quoted,
            None => Place::Word,
        };
        let mut owner = frame.cond_owner;
        if let FrameKind::Cmd(c) = &mut frame.kind {
            c.in_word = true;
            c.word_start = false;
            c.word.push('\u{1}');
            if c.cond.is_some() {
                c.word_slots.push(idx);
                owner = None;
            }
        }
        if let Some(o) = owner {
            if let FrameKind::Cmd(c) = &mut self.stack[o].kind {
                c.word_slots.push(idx);
            }
        }
        self.found.push(Found {
            slot: n,
            offset,
            len: end - offset,
            place,
        });
    }

    /// `$` at `i` in a context where expansions happen; returns the next index.
    fn dollar(&mut self, i: usize, ansi_and_locale: bool) -> usize {
        let b = self.bytes;
        match b.get(i + 1) {
            Some(b'(') if b.get(i + 2) == Some(&b'(') => {
                self.push(
                    FrameKind::Arith {
                        depth: 0,
                        end: ArithEnd::DoubleParen,
                    },
                    Some(Refusal::Arithmetic),
                );
                i + 3
            }
            Some(b'(') => {
                self.push(FrameKind::Cmd(Box::new(Cmd::new(Closer::Paren))), None);
                i + 2
            }
            Some(b'{') => {
                self.push(
                    FrameKind::Param { depth: 0 },
                    Some(Refusal::ParameterExpansion),
                );
                i + 2
            }
            Some(b'[') => {
                self.push(
                    FrameKind::Arith {
                        depth: 0,
                        end: ArithEnd::Bracket,
                    },
                    Some(Refusal::Arithmetic),
                );
                i + 2
            }
            Some(b'\'') if ansi_and_locale => {
                self.push(FrameKind::AnsiC, None);
                i + 2
            }
            Some(b'"') if ansi_and_locale => {
                self.push(FrameKind::Double, None);
                i + 2
            }
            _ => {
                if let Some((n, end)) = self.slot_at(i + 1) {
                    self.word_char('$');
                    self.record_slot(n, i + 1, end, Some(Refusal::AfterDollar));
                    return end;
                }
                self.word_char('$');
                i + 1
            }
        }
    }

    fn word_char(&mut self, c: char) {
        if let Some(cmd) = self.top_cmd() {
            cmd.push_char(c);
        }
    }

    /// A backslash at `i`: escapes the next character (when `escapes` accepts it).
    fn backslash(&mut self, i: usize, escapes: impl Fn(u8) -> bool) -> usize {
        if let Some((n, end)) = self.slot_at(i + 1) {
            self.record_slot(n, i + 1, end, Some(Refusal::AfterBackslash));
            return end;
        }
        match self.bytes.get(i + 1) {
            Some(&c) if escapes(c) => {
                if c != b'\n' {
                    self.word_char(c as char);
                }
                i + 1 + utf8_len(c)
            }
            _ => {
                self.word_char('\\');
                i + 1
            }
        }
    }

    fn run(&mut self) {
        let b = self.bytes;
        let mut i = 0;
        while i < b.len() {
            // A heredoc body line that is the delimiter ends the body.
            let top = self.stack.len() - 1;
            if let (FrameKind::Heredoc(h), true) =
                (&self.stack[top].kind, self.stack[top].line_start)
            {
                let end = self.text[i..].find('\n').map_or(b.len(), |e| i + e);
                let line = &self.text[i..end];
                let line = if h.strip_tabs {
                    line.trim_start_matches('\t')
                } else {
                    line
                };
                if line == h.delimiter {
                    self.pop();
                    i = end;
                    continue;
                }
                self.stack[top].line_start = false;
            }
            if let Some((n, end)) = self.slot_at(i) {
                self.record_slot(n, i, end, None);
                i = end;
                continue;
            }
            let c = b[i];
            let top = self.stack.len() - 1;
            i = match &mut self.stack[top].kind {
                FrameKind::Single => {
                    if c == b'\'' {
                        self.pop();
                    }
                    i + 1
                }
                FrameKind::AnsiC => match c {
                    b'\\' => self.backslash(i, |_| true),
                    b'\'' => {
                        self.pop();
                        i + 1
                    }
                    _ => i + 1,
                },
                FrameKind::Double => match c {
                    b'\\' => self.backslash(i, |n| matches!(n, b'$' | b'`' | b'"' | b'\\' | b'\n')),
                    b'"' => {
                        self.pop();
                        i + 1
                    }
                    b'$' => self.dollar(i, false),
                    b'`' => {
                        self.push(
                            FrameKind::Cmd(Box::new(Cmd::new(Closer::Backtick))),
                            Some(Refusal::Backticks),
                        );
                        i + 1
                    }
                    _ => i + 1,
                },
                FrameKind::Heredoc(h) => {
                    let quoted = h.quoted;
                    if c == b'\n' {
                        self.top().line_start = true;
                        i + 1
                    } else if quoted {
                        i + 1
                    } else {
                        match c {
                            b'\\' => {
                                self.backslash(i, |n| matches!(n, b'$' | b'`' | b'\\' | b'\n'))
                            }
                            b'$' => self.dollar(i, false),
                            b'`' => {
                                self.push(
                                    FrameKind::Cmd(Box::new(Cmd::new(Closer::Backtick))),
                                    Some(Refusal::Backticks),
                                );
                                i + 1
                            }
                            _ => i + 1,
                        }
                    }
                }
                FrameKind::Arith { depth, end } => match (c, *end) {
                    (b'(', _) => {
                        *depth += 1;
                        i + 1
                    }
                    (b')', ArithEnd::DoubleParen) if *depth == 0 => {
                        self.pop();
                        if b.get(i + 1) == Some(&b')') {
                            i + 2
                        } else {
                            i + 1
                        }
                    }
                    (b')', _) => {
                        *depth = depth.saturating_sub(1);
                        i + 1
                    }
                    (b']', ArithEnd::Bracket) if *depth == 0 => {
                        self.pop();
                        i + 1
                    }
                    (b'[', ArithEnd::Bracket) => {
                        *depth += 1;
                        i + 1
                    }
                    (b']', ArithEnd::Bracket) => {
                        *depth -= 1;
                        i + 1
                    }
                    (b'$', _) => self.dollar(i, false),
                    (b'`', _) => {
                        self.push(FrameKind::Cmd(Box::new(Cmd::new(Closer::Backtick))), None);
                        i + 1
                    }
                    (b'\\', _) => self.backslash(i, |_| true),
                    (b'\'', _) => {
                        self.push(FrameKind::Single, None);
                        i + 1
                    }
                    (b'"', _) => {
                        self.push(FrameKind::Double, None);
                        i + 1
                    }
                    _ => i + 1,
                },
                FrameKind::Param { depth } => match c {
                    b'{' => {
                        *depth += 1;
                        i + 1
                    }
                    b'}' if *depth == 0 => {
                        self.pop();
                        i + 1
                    }
                    b'}' => {
                        *depth -= 1;
                        i + 1
                    }
                    b'\\' => self.backslash(i, |_| true),
                    b'\'' => {
                        self.push(FrameKind::Single, None);
                        i + 1
                    }
                    b'"' => {
                        self.push(FrameKind::Double, None);
                        i + 1
                    }
                    b'$' => self.dollar(i, true),
                    b'`' => {
                        self.push(FrameKind::Cmd(Box::new(Cmd::new(Closer::Backtick))), None);
                        i + 1
                    }
                    _ => i + 1,
                },
                FrameKind::Cmd(_) => self.command_char(i),
            };
        }
    }

    fn command_char(&mut self, i: usize) -> usize {
        let b = self.bytes;
        let c = b[i];
        let Some(cmd) = self.top_cmd() else {
            return i + 1;
        };
        let word_start = cmd.word_start;
        let closer = cmd.closer;
        let assignment = cmd.word.ends_with('=');
        let depth = cmd.depth;
        let cases = cmd.cases;
        match c {
            b'\\' => self.backslash(i, |_| true),
            b'\'' => {
                self.push(FrameKind::Single, None);
                i + 1
            }
            b'"' => {
                self.push(FrameKind::Double, None);
                i + 1
            }
            b'`' if closer == Closer::Backtick => {
                self.end_word();
                self.pop();
                i + 1
            }
            b'`' => {
                self.push(
                    FrameKind::Cmd(Box::new(Cmd::new(Closer::Backtick))),
                    Some(Refusal::Backticks),
                );
                i + 1
            }
            b'$' => self.dollar(i, true),
            b'#' if word_start => {
                let end = self.text[i..].find('\n').map_or(b.len(), |e| i + e);
                let mut j = i;
                while j < end {
                    if let Some((n, e)) = self.slot_at(j) {
                        self.found.push(Found {
                            slot: n,
                            offset: j,
                            len: e - j,
                            place: Place::Refused(Refusal::Comment),
                        });
                        j = e;
                    } else {
                        j += 1;
                    }
                }
                end
            }
            b'(' if word_start && b.get(i + 1) == Some(&b'(') => {
                self.push(
                    FrameKind::Arith {
                        depth: 0,
                        end: ArithEnd::DoubleParen,
                    },
                    Some(Refusal::Arithmetic),
                );
                i + 2
            }
            b'(' => {
                if let Some(cmd) = self.top_cmd() {
                    cmd.depth += 1;
                    if assignment {
                        // `a=(x y)`: an array's elements are words.
                        cmd.in_word = false;
                        cmd.word.clear();
                        cmd.word_start = true;
                    }
                }
                if !assignment {
                    self.end_command();
                }
                i + 1
            }
            b')' => {
                if cases > 0 && depth == 0 {
                    self.end_command();
                } else if depth > 0 {
                    if let Some(cmd) = self.top_cmd() {
                        cmd.depth -= 1;
                    }
                    self.end_command();
                } else if closer == Closer::Paren {
                    self.end_word();
                    self.pop();
                } else {
                    self.end_command();
                }
                i + 1
            }
            b' ' | b'\t' => {
                self.end_word();
                if let Some(cmd) = self.top_cmd() {
                    cmd.word_start = true;
                }
                i + 1
            }
            b'\n' => {
                self.end_command();
                if !self.pending.is_empty() {
                    let h = self.pending.remove(0);
                    self.push(FrameKind::Heredoc(h), None);
                }
                i + 1
            }
            b';' | b'&' | b'|' => {
                self.end_command();
                i + 1
            }
            b'<' if b[i..].starts_with(b"<<<") => {
                self.end_word();
                i + 3
            }
            b'<' if b.get(i + 1) == Some(&b'<') => {
                self.end_word();
                self.heredoc_operator(i)
            }
            b'<' | b'>' => {
                self.end_word();
                if let Some(cmd) = self.top_cmd() {
                    cmd.word_start = true;
                }
                i + 1
            }
            _ => {
                let len = utf8_len(c);
                let ch = self.text[i..i + len].chars().next().unwrap_or('?');
                if let Some(cmd) = self.top_cmd() {
                    cmd.push_char(ch);
                }
                i + len
            }
        }
    }

    /// `<<WORD` or `<<-WORD` at `i`: the body starts after the end of the line.
    fn heredoc_operator(&mut self, i: usize) -> usize {
        let b = self.bytes;
        let mut j = i + 2;
        let strip_tabs = b.get(j) == Some(&b'-');
        if strip_tabs {
            j += 1;
        }
        while matches!(b.get(j), Some(b' ' | b'\t')) {
            j += 1;
        }
        let mut delimiter = Vec::new();
        let mut quoted = false;
        while let Some(&c) = b.get(j) {
            match c {
                b'\'' | b'"' => {
                    quoted = true;
                    let close = b[j + 1..].iter().position(|&x| x == c);
                    let end = close.map_or(b.len(), |e| j + 1 + e);
                    delimiter.extend_from_slice(&b[j + 1..end]);
                    j = (end + 1).min(b.len());
                }
                b'\\' => {
                    quoted = true;
                    if let Some(&n) = b.get(j + 1) {
                        delimiter.push(n);
                    }
                    j += 2;
                }
                b' ' | b'\t' | b'\n' | b';' | b'|' | b'&' | b'<' | b'>' | b'(' | b')' => break,
                _ => {
                    delimiter.push(c);
                    j += 1;
                }
            }
        }
        if !delimiter.is_empty() {
            self.pending.push(Heredoc {
                delimiter: String::from_utf8_lossy(&delimiter).into_owned(),
                strip_tabs,
                quoted,
            });
        }
        j.min(b.len())
    }
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Places of the values of a script where `@` stands for a value.
    fn at(script: &str) -> Vec<Place> {
        let mut n = 0;
        let mut text = String::new();
        for c in script.chars() {
            if c == '@' {
                text.push_str(&slot(n));
                n += 1;
            } else {
                text.push(c);
            }
        }
        let found = places(&text);
        assert_eq!(found.len(), n, "every slot is found in {script:?}");
        found.into_iter().map(|f| f.place).collect()
    }

    use Place::{Quoted as Q, Refused as R, Word as W};
    use Refusal::*;

    #[test]
    fn words_and_double_quotes() {
        assert_eq!(at("echo @ | tee @/a.txt"), [W, W]);
        assert_eq!(at("out=$(printf '%s' @)"), [W]);
        assert_eq!(at("echo \"x @ y\" '@'"), [Q, R(SingleQuotes)]);
        assert_eq!(at("echo \"$(cat @/f)\""), [W]);
        assert_eq!(at("echo \"a $(b \"@\") c\""), [Q]);
        assert_eq!(at("x=@ y=\"@\""), [W, Q]);
        assert_eq!(at("a=(@ \"@\"); echo ${a[0]}"), [W, Q]);
        assert_eq!(at("case @ in a) echo @;; esac"), [W, W]);
        assert_eq!(at("[[ @ == x && @ =~ y ]]"), [W, W]);
        assert_eq!(at("[ @ -eq 1 ]"), [W]);
        assert_eq!(at("echo $(foo)#@"), [W]);
        assert_eq!(at("echo a#@"), [W]);
        assert_eq!(at("echo \\\\@"), [W]);
    }

    #[test]
    fn comments() {
        assert_eq!(at("# a comment @\necho @"), [R(Comment), W]);
        assert_eq!(at("echo x # @\necho @"), [R(Comment), W]);
        assert_eq!(at("(true)#@\necho @"), [R(Comment), W]);
    }

    #[test]
    fn arithmetic_in_every_form() {
        assert_eq!(at("echo $(( @ + 1 ))"), [R(Arithmetic)]);
        assert_eq!(at("echo \"$(( \"@\" + 1 ))\""), [R(Arithmetic)]);
        assert_eq!(at("(( @ > 0 ))"), [R(Arithmetic)]);
        assert_eq!(at("for (( i=0; i<@; i++ )); do :; done"), [R(Arithmetic)]);
        assert_eq!(at("echo $[@+1]"), [R(Arithmetic)]);
        assert_eq!(at("[[ @ -eq 1 ]]"), [R(TestOperand)]);
        assert_eq!(at("[[ 1 -lt \"@\" && @ == x ]]"), [R(TestOperand), W]);
        assert_eq!(at("echo ${a[@]}"), [R(ParameterExpansion)]);
        assert_eq!(at("a[@]=1"), [R(Subscript)]);
        assert_eq!(at("a[\"@\"]=1"), [R(Subscript)]);
        assert_eq!(at("let n=@"), [R(Let)]);
        assert_eq!(at("declare -i v=@"), [R(Integer)]);
        assert_eq!(at("local -ri v=\"@\""), [R(Integer)]);
        assert_eq!(at("declare -i v; v=@; w=@"), [R(Integer), W]);
        assert_eq!(at("declare -n r=@"), [R(Nameref)]);
        assert_eq!(at("declare -i n=$(echo @)"), [R(Integer)]);
        assert_eq!(at("echo $(( $(cat @) ))"), [R(Arithmetic)]);
    }

    #[test]
    fn quotes_of_every_kind() {
        assert_eq!(at("echo '@'"), [R(SingleQuotes)]);
        assert_eq!(at("echo $'it\\'s @'; echo @"), [R(AnsiC), W]);
        assert_eq!(at("echo $\"@\""), [Q]);
        assert_eq!(at("echo `cat @`"), [R(Backticks)]);
        assert_eq!(at("echo \"`cat @`\" @"), [R(Backticks), W]);
        assert_eq!(at("echo $@"), [R(AfterDollar)]);
        assert_eq!(at("echo \\@"), [R(AfterBackslash)]);
        assert_eq!(at("echo \"\\@\""), [R(AfterBackslash)]);
        assert_eq!(at("echo 'it''s' @"), [W]);
    }

    #[test]
    fn heredocs() {
        assert_eq!(at("cat <<EOF\nvalue: @\nEOF\necho @"), [Q, W]);
        assert_eq!(at("cat <<'EOF'\n@\nEOF\necho @"), [R(QuotedHeredoc), W]);
        assert_eq!(at("cat <<\"E\"\n@\nE\necho @"), [R(QuotedHeredoc), W]);
        assert_eq!(at("cat <<\\E\n@\nE\necho @"), [R(QuotedHeredoc), W]);
        assert_eq!(at("cat <<-END\n\t@\n\tEND\necho @"), [Q, W]);
        // Without `-`, a tab before the delimiter does not end the body.
        assert_eq!(at("cat <<END\n\tEND\n'@'\nEND\necho @"), [Q, W]);
        assert_eq!(
            at("cat <<A <<'B'\n@\nA\n@\nB\necho @"),
            [Q, R(QuotedHeredoc), W]
        );
        assert_eq!(
            at("x=$(cat <<EOF\n@ \"$(echo @)\"\nEOF\n)\necho @"),
            [Q, W, W]
        );
        assert_eq!(at("cat <<EOF\n$(( @ ))\nEOF"), [R(Arithmetic)]);
        assert_eq!(at("cat <<<@"), [W]);
        assert_eq!(at("echo $((1<<2)) @"), [W]);
    }

    #[test]
    fn hostile_text_is_bounded() {
        let deep = "$(".repeat(5000) + "@" + &")".repeat(5000);
        assert_eq!(at(&deep), [W]);
        let open = "\"".to_string() + &"@ ".repeat(20_000);
        assert_eq!(at(&open).len(), 20_000);
        assert!(places("\u{E000}99999999999999999999999\u{E001}").is_empty());
        assert!(places("\u{E000}\u{E001}").is_empty());
    }
}
