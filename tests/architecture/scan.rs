//! Rust source -> tokens -> the paths a file names: `use` trees, inline paths,
//! inline modules, with test code left out.

#[derive(Debug, Clone)]
pub struct Token {
    pub text: String,
    pub line: usize,
}

impl Token {
    pub fn is(&self, s: &str) -> bool {
        self.text == s
    }
    pub fn is_ident(&self) -> bool {
        self.text
            .chars()
            .next()
            .is_some_and(|c| c.is_alphabetic() || c == '_' || c == '$')
    }
}

/// Rust source -> identifiers and punctuation (`::` as one token); comments,
/// strings, characters and lifetimes dropped.
pub fn tokenize(src: &str) -> Vec<Token> {
    let chars: Vec<char> = src.chars().collect();
    let mut tokens = Vec::new();
    let mut line = 1;
    let mut i = 0;
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '/' && at(i + 1) == '/' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    line += usize::from(chars[i] == '\n');
                    i += 1;
                }
            }
        } else if c == '"' || (matches!(c, 'b' | 'c' | 'r') && is_string_start(&chars, i)) {
            // (b|c)?r#*"..."#* or (b|c)?"..."
            let mut j = i;
            if matches!(chars[j], 'b' | 'c') {
                j += 1;
            }
            let raw = chars[j] == 'r';
            let mut hashes = 0;
            if raw {
                j += 1;
                while chars[j] == '#' {
                    hashes += 1;
                    j += 1;
                }
            }
            j += 1; // the opening quote
            while let Some(&ch) = chars.get(j) {
                if ch == '\n' {
                    line += 1;
                }
                if !raw && ch == '\\' {
                    line += usize::from(at(j + 1) == '\n');
                    j += 2;
                    continue;
                }
                if ch == '"' && (0..hashes).all(|h| at(j + 1 + h) == '#') {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            i = j;
        } else if c == '\'' {
            // A character literal, or a lifetime / label.
            if at(i + 1) == '\\' {
                let mut j = i + 3;
                while j < chars.len() && chars[j] != '\'' {
                    j += 1;
                }
                i = j + 1;
            } else if at(i + 2) == '\'' {
                i += 3;
            } else {
                i += 1;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
            }
        } else if c.is_alphanumeric() || c == '_' || c == '$' {
            let start = i;
            i += 1;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push(Token {
                text: chars[start..i].iter().collect(),
                line,
            });
        } else if c == ':' && at(i + 1) == ':' {
            tokens.push(Token {
                text: "::".to_owned(),
                line,
            });
            i += 2;
        } else {
            tokens.push(Token {
                text: c.to_string(),
                line,
            });
            i += 1;
        }
    }
    tokens
}

fn is_string_start(chars: &[char], i: usize) -> bool {
    if i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_') {
        return false;
    }
    let mut j = i;
    if matches!(chars[j], 'b' | 'c') {
        j += 1;
    }
    if chars.get(j) == Some(&'r') {
        j += 1;
        while chars.get(j) == Some(&'#') {
            j += 1;
        }
    }
    j > i && chars.get(j) == Some(&'"')
}

/// A path named in a file.
pub struct NamedPath {
    pub scope: Vec<String>,
    pub segments: Vec<String>,
    pub line: usize,
    /// `Some` for `pub use`: the name it is re-exported under (`None`: its own).
    pub reexport_as: Option<Option<String>>,
}

pub struct Scan {
    pub paths: Vec<NamedPath>,
    pub inline_modules: Vec<Vec<String>>,
    /// `#[cfg(test)] mod x;`: file modules that are test code.
    pub test_children: Vec<String>,
}

/// Walks the tokens of the file that is `module`: `use` trees, inline paths,
/// inline modules, test code.
pub fn scan(t: &[Token], module: &[String]) -> Scan {
    let mut out = Scan {
        paths: Vec::new(),
        inline_modules: Vec::new(),
        test_children: Vec::new(),
    };
    // Open braces: Some(module) for an inline module's body.
    let mut braces: Vec<bool> = Vec::new();
    let mut scope = module.to_vec();
    let mut i = 0;
    while i < t.len() {
        if is_cfg_test(t, i) {
            let after = skip_attributes(t, i);
            let item = skip_visibility(t, after);
            if t.get(item).is_some_and(|x| x.is("mod"))
                && t.get(item + 2).is_some_and(|x| x.is(";"))
            {
                out.test_children.push(t[item + 1].text.clone());
            }
            i = skip_item(t, after);
            continue;
        }
        let tok = &t[i];
        if tok.is("mod") && t.get(i + 2).is_some_and(|x| x.is("{")) {
            scope.push(t[i + 1].text.clone());
            out.inline_modules.push(scope.clone());
            braces.push(true);
            i += 3;
            continue;
        }
        if tok.is("{") {
            braces.push(false);
        } else if tok.is("}") {
            if braces.pop() == Some(true) {
                scope.pop();
            }
        } else if tok.is("use") {
            let public = i > 0
                && (t[i - 1].is("pub")
                    || (t[i - 1].is(")") && i >= 3 && visibility_open(t, i - 1)));
            let mut trees = Vec::new();
            let mut j = i + 1;
            parse_use_tree(t, &mut j, Vec::new(), &mut trees);
            for (segments, alias) in trees {
                let reexport_as = public.then(|| alias.clone());
                out.paths.push(NamedPath {
                    scope: scope.clone(),
                    segments,
                    line: tok.line,
                    reexport_as,
                });
            }
            while j < t.len() && !t[j].is(";") {
                j += 1;
            }
            i = j + 1;
            continue;
        } else if tok.is_ident()
            && t.get(i + 1).is_some_and(|x| x.is("::"))
            && !(i > 0 && t[i - 1].is("::"))
        {
            let mut segments = vec![tok.text.clone()];
            let mut j = i + 1;
            while t.get(j).is_some_and(|x| x.is("::")) && t.get(j + 1).is_some_and(Token::is_ident)
            {
                segments.push(t[j + 1].text.clone());
                j += 2;
            }
            out.paths.push(NamedPath {
                scope: scope.clone(),
                segments,
                line: tok.line,
                reexport_as: None,
            });
            i = j;
            continue;
        }
        i += 1;
    }
    out
}

/// `pub(crate)`, `pub(super)`, `pub(in path)` ending at `close`.
fn visibility_open(t: &[Token], close: usize) -> bool {
    let mut j = close;
    while j > 0 && !t[j].is("(") {
        j -= 1;
    }
    j > 0 && t[j - 1].is("pub")
}

fn is_cfg_test(t: &[Token], i: usize) -> bool {
    let words: Vec<&str> = t[i..t.len().min(i + 7)]
        .iter()
        .map(|x| x.text.as_str())
        .collect();
    words == ["#", "[", "cfg", "(", "test", ")", "]"]
}

fn skip_attributes(t: &[Token], mut i: usize) -> usize {
    while t.get(i).is_some_and(|x| x.is("#")) && t.get(i + 1).is_some_and(|x| x.is("[")) {
        i = past_group(t, i + 1);
    }
    i
}

/// Past the bracket opening at `i` and its match.
fn past_group(t: &[Token], mut i: usize) -> usize {
    let open = t[i].text.clone();
    let close = match open.as_str() {
        "(" => ")",
        "[" => "]",
        _ => "}",
    };
    let mut depth = 0;
    while i < t.len() {
        if t[i].is(&open) {
            depth += 1;
        } else if t[i].is(close) {
            depth -= 1;
            if depth == 0 {
                return i + 1;
            }
        }
        i += 1;
    }
    i
}

fn skip_visibility(t: &[Token], mut i: usize) -> usize {
    if t.get(i).is_some_and(|x| x.is("pub")) {
        i += 1;
        if t.get(i).is_some_and(|x| x.is("(")) {
            while i < t.len() && !t[i].is(")") {
                i += 1;
            }
            i += 1;
        }
    }
    i
}

/// Past one item: to its `;` or the end of its first `{ }` block.
fn skip_item(t: &[Token], mut i: usize) -> usize {
    while i < t.len() {
        match t[i].text.as_str() {
            "{" => return past_group(t, i),
            "(" | "[" => i = past_group(t, i),
            ";" => return i + 1,
            _ => i += 1,
        }
    }
    i
}

/// One `use` tree -> its leaves as (path, `as` alias).
fn parse_use_tree(
    t: &[Token],
    j: &mut usize,
    mut prefix: Vec<String>,
    out: &mut Vec<(Vec<String>, Option<String>)>,
) {
    if t.get(*j).is_some_and(|x| x.is("::")) {
        *j += 1;
    }
    loop {
        let Some(tok) = t.get(*j) else { return };
        if tok.is("{") {
            *j += 1;
            loop {
                if t.get(*j).is_none_or(|x| x.is("}")) {
                    *j += 1;
                    return;
                }
                parse_use_tree(t, j, prefix.clone(), out);
                if t.get(*j).is_some_and(|x| x.is(",")) {
                    *j += 1;
                }
            }
        }
        if tok.is("*") {
            *j += 1;
            out.push((prefix, None));
            return;
        }
        if !tok.is_ident() {
            return;
        }
        prefix.push(tok.text.clone());
        *j += 1;
        if t.get(*j).is_some_and(|x| x.is("::")) {
            *j += 1;
            continue;
        }
        let mut alias = None;
        if t.get(*j).is_some_and(|x| x.is("as")) {
            alias = t.get(*j + 1).map(|x| x.text.clone());
            *j += 2;
        }
        out.push((prefix, alias));
        return;
    }
}
