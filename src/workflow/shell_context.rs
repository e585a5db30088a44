//! Where a `{{substitution}}` stands in a bash script, as far as quoting goes.
//!
//! reins shell-quotes every value substituted into a bash node. That quoting is right where
//! the shell reads a plain word (`echo {{x}}`, `cmd $(other {{x}})`), but no quoting is safe
//! everywhere: inside double quotes or a heredoc body `$(...)` in the value would still run,
//! inside single quotes the value's own quotes would end the string. So `validate` rejects
//! substitutions in those places, and `reins run` never runs a workflow `validate` rejects.

/// A quoting context in which a substitution is not safe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsafe {
    /// Inside `"..."`.
    DoubleQuotes,
    /// Inside `'...'`.
    SingleQuotes,
    /// Inside `` `...` ``.
    Backticks,
    /// In the body of a heredoc (`<<EOF`).
    Heredoc,
}

impl Unsafe {
    /// How the place is named in messages.
    pub fn describe(self) -> &'static str {
        match self {
            Unsafe::DoubleQuotes => "inside double quotes",
            Unsafe::SingleQuotes => "inside single quotes",
            Unsafe::Backticks => "inside backticks",
            Unsafe::Heredoc => "inside a heredoc",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Plain,
    Double,
    Single,
    Backtick,
}

/// Byte offsets of the value substitutions of a bash template that stand in an unsafe
/// place, with the place. Block tags (`{{#if}}`, `{{/if}}`, `{{else}}`), comments and
/// escaped braces (`\{{`) insert no value and are ignored.
pub fn unsafe_substitutions(template: &str) -> Vec<(usize, Unsafe)> {
    let bytes = template.as_bytes();
    let mut found = Vec::new();
    // Stack of contexts: `$(` pushes Plain, a closing `)` at depth pops.
    let mut stack: Vec<(State, usize)> = vec![(State::Plain, 0)];
    let mut pending_heredocs: Vec<String> = Vec::new();
    let mut heredoc: Option<String> = None;
    let mut at_word_start = true;
    let mut i = 0;
    while i < bytes.len() {
        // Template tags are opaque: classify them, then skip them.
        if bytes[i..].starts_with(b"{{") && !(i > 0 && bytes[i - 1] == b'\\') {
            let close = template[i..]
                .find("}}")
                .map(|e| i + e + 2)
                .unwrap_or(bytes.len());
            let tag = template[i + 2..close.saturating_sub(2).max(i + 2)]
                .trim_start_matches(['{', '~'])
                .trim_start();
            let inserts_value = !(tag.starts_with('#')
                || tag.starts_with('/')
                || tag.starts_with('!')
                || tag.starts_with('>')
                || tag == "else"
                || tag.starts_with("else "));
            if inserts_value {
                let place = if heredoc.is_some() {
                    Some(Unsafe::Heredoc)
                } else {
                    match stack.last().map(|s| s.0).unwrap_or(State::Plain) {
                        State::Plain => None,
                        State::Double => Some(Unsafe::DoubleQuotes),
                        State::Single => Some(Unsafe::SingleQuotes),
                        State::Backtick => Some(Unsafe::Backticks),
                    }
                };
                if let Some(place) = place {
                    found.push((i, place));
                }
            }
            i = close;
            at_word_start = false;
            continue;
        }
        let c = bytes[i];
        if let Some(delimiter) = &heredoc {
            // Inside a heredoc body: only a line equal to the delimiter ends it.
            if c == b'\n' {
                let line_start = i + 1;
                let line_end = template[line_start..]
                    .find('\n')
                    .map(|e| line_start + e)
                    .unwrap_or(bytes.len());
                if template[line_start..line_end].trim_start_matches('\t') == delimiter.as_str() {
                    heredoc = None;
                    i = line_end;
                    continue;
                }
            }
            i += 1;
            continue;
        }
        let state = stack.last().map(|s| s.0).unwrap_or(State::Plain);
        match (state, c) {
            (State::Single, b'\'') => {
                stack.pop();
            }
            (State::Single, _) => {}
            (_, b'\\') => {
                i += 2;
                continue;
            }
            (State::Double, b'"') | (State::Backtick, b'`') => {
                stack.pop();
            }
            (State::Plain, b'\'') => stack.push((State::Single, 0)),
            (State::Plain, b'"') => stack.push((State::Double, 0)),
            (State::Plain | State::Double, b'`') => stack.push((State::Backtick, 0)),
            (State::Plain | State::Double, b'$') if bytes.get(i + 1) == Some(&b'(') => {
                stack.push((State::Plain, 1));
                i += 2;
                at_word_start = true;
                continue;
            }
            (State::Plain, b'(') => {
                if let Some(top) = stack.last_mut() {
                    top.1 += 1;
                }
            }
            (State::Plain, b')') => {
                if let Some(top) = stack.last_mut() {
                    if top.1 > 0 {
                        top.1 -= 1;
                        if top.1 == 0 && stack.len() > 1 {
                            stack.pop();
                        }
                    }
                }
            }
            (State::Plain, b'#') if at_word_start => {
                // A comment: skip to the end of the line.
                let end = template[i..]
                    .find('\n')
                    .map(|e| i + e)
                    .unwrap_or(bytes.len());
                i = end;
                continue;
            }
            (State::Plain, b'<')
                if bytes.get(i + 1) == Some(&b'<') && bytes.get(i + 2) != Some(&b'<') =>
            {
                let mut j = i + 2;
                if bytes.get(j) == Some(&b'-') {
                    j += 1;
                }
                while bytes.get(j).is_some_and(|b| *b == b' ' || *b == b'\t') {
                    j += 1;
                }
                let rest = &template[j..];
                let word_end = rest
                    .find(|ch: char| {
                        ch.is_whitespace() || ch == ';' || ch == '|' || ch == '&' || ch == ')'
                    })
                    .unwrap_or(rest.len());
                let word = rest[..word_end].trim_matches(['\'', '"']).replace('\\', "");
                if !word.is_empty() {
                    pending_heredocs.push(word);
                }
                i = j + word_end;
                continue;
            }
            (State::Plain, b'\n') if !pending_heredocs.is_empty() => {
                heredoc = Some(pending_heredocs.remove(0));
                i += 1;
                continue;
            }
            _ => {}
        }
        at_word_start = matches!(c, b' ' | b'\t' | b'\n' | b';' | b'|' | b'&' | b'(');
        i += 1;
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn places(t: &str) -> Vec<Unsafe> {
        unsafe_substitutions(t)
            .into_iter()
            .map(|(_, p)| p)
            .collect()
    }

    #[test]
    fn plain_words_are_safe() {
        assert!(places("echo {{inputs.x}} | tee {{artifacts}}/a.txt").is_empty());
        assert!(places("out=$(printf '%s' {{nodes.a.output}})").is_empty());
        assert!(places("echo \"literal\" {{x}} 'also literal' {{y}}").is_empty());
        assert!(places("echo \"$(cat {{artifacts}}/f)\"").is_empty());
        assert!(places("# a comment {{x}}\necho ok").is_empty());
        assert!(places("echo \\\"{{x}}").is_empty());
        assert!(places("{{#if inputs.x}}echo \"yes\"{{else}}echo no{{/if}}").is_empty());
    }

    #[test]
    fn quotes_backticks_and_heredocs_are_not() {
        assert_eq!(places("echo \"{{x}}\""), [Unsafe::DoubleQuotes]);
        assert_eq!(places("echo \"a $(b) {{x}}\""), [Unsafe::DoubleQuotes]);
        assert_eq!(places("echo '{{x}}'"), [Unsafe::SingleQuotes]);
        assert_eq!(places("echo `cat {{x}}`"), [Unsafe::Backticks]);
        assert_eq!(
            places("cat <<EOF\nvalue: {{x}}\nEOF\necho {{y}}"),
            [Unsafe::Heredoc]
        );
        assert_eq!(places("cat <<-'END'\n\t{{x}}\n\tEND\n"), [Unsafe::Heredoc]);
        assert_eq!(
            places("git commit -m \"$(head -n 1 {{a}})\" -m \"{{b}}\""),
            [Unsafe::DoubleQuotes]
        );
    }
}
