//! Find the line of a YAML path (`datasets[0].forget_classes[2]`) in the experiment text, so that
//! semantic errors found after parsing still point at `FILE:LINE:COL`.
//!
//! serde_yaml keeps no spans after deserialisation; this is a small indentation-based walker that
//! understands block mappings, block sequences and one-line flow sequences / mappings. When a
//! segment cannot be found, the deepest segment that was found is reported.

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seg {
    Key(&'static str),
    Idx(usize),
}

/// `datasets[0].forget_classes[2]`
pub fn path_string(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Idx(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

fn is_blank(line: &str) -> bool {
    let t = line.trim();
    t.is_empty() || t.starts_with('#')
}

/// 1-based (line, column) of the path, or of its deepest prefix that could be found.
pub fn locate(text: &str, path: &[Seg]) -> Option<(usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let (mut lo, mut hi) = (0usize, lines.len());
    // Column from which the current block's content starts on its first line (inline values).
    let mut first_col = 0usize;
    let mut parent_indent: isize = -1;
    let mut best = None;
    for seg in path {
        match seg {
            Seg::Key(k) => {
                let mut found = None;
                for (li, line) in lines.iter().enumerate().take(hi).skip(lo) {
                    if is_blank(line) {
                        continue;
                    }
                    let from = if li == lo { first_col } else { 0 };
                    if from > line.len() {
                        continue;
                    }
                    let hay = &line[from..];
                    if let Some(col) = find_key(hay, k) {
                        let col = col + from;
                        if li != lo && (indent_of(line) as isize) <= parent_indent {
                            break;
                        }
                        found = Some((li, col));
                        break;
                    }
                }
                let Some((li, col)) = found else {
                    return best;
                };
                best = Some((li + 1, col + 1));
                // The key's block: following lines indented deeper than the key.
                let key_indent = col as isize;
                let mut end = li + 1;
                while end < hi
                    && (is_blank(lines[end]) || indent_of(lines[end]) as isize > key_indent)
                {
                    end += 1;
                }
                lo = li;
                hi = end;
                first_col = col + k.len() + 1;
                parent_indent = key_indent;
            }
            Seg::Idx(i) => {
                // Block sequence items below the key.
                let items: Vec<(usize, usize)> = {
                    let mut v = Vec::new();
                    let mut item_indent = None;
                    for (li, line) in lines.iter().enumerate().take(hi).skip(lo + 1) {
                        if is_blank(line) {
                            continue;
                        }
                        let ind = indent_of(line);
                        let t = line.trim_start();
                        if t.starts_with("- ") || t == "-" {
                            match item_indent {
                                None => {
                                    item_indent = Some(ind);
                                    v.push((li, ind));
                                }
                                Some(x) if x == ind => v.push((li, ind)),
                                _ => {}
                            }
                        }
                    }
                    v
                };
                if let Some(&(li, ind)) = items.get(*i) {
                    best = Some((li + 1, ind + 3));
                    let mut end = li + 1;
                    while end < hi
                        && (is_blank(lines[end])
                            || indent_of(lines[end]) > ind
                            || (indent_of(lines[end]) == ind
                                && !lines[end].trim_start().starts_with('-')))
                    {
                        end += 1;
                    }
                    lo = li;
                    hi = end;
                    first_col = ind + 2;
                    parent_indent = ind as isize;
                } else {
                    // A flow sequence on the current line: `[a, b, c]`.
                    let Some(line) = lines.get(lo) else {
                        return best;
                    };
                    let from = first_col.min(line.len());
                    let Some(open) = line[from..].find('[').map(|o| o + from) else {
                        return best;
                    };
                    let Some(col) = nth_flow_item(line, open + 1, *i) else {
                        return best;
                    };
                    best = Some((lo + 1, col + 1));
                    first_col = col;
                    hi = lo + 1;
                }
            }
        }
    }
    best
}

/// Column of `key:` in `hay` where it starts a mapping key (after indentation, `- `, `{` or `,`).
fn find_key(hay: &str, key: &str) -> Option<usize> {
    let bytes = hay.as_bytes();
    let mut start = 0;
    while let Some(pos) = hay[start..].find(key) {
        let p = start + pos;
        let before_ok = hay[..p]
            .trim_end()
            .chars()
            .last()
            .map(|c| c == '-' || c == '{' || c == ',')
            .unwrap_or(true);
        let after = hay[p + key.len()..].trim_start();
        let quoted_ok = p == 0 || bytes[p - 1] != b'_';
        if before_ok && quoted_ok && after.starts_with(':') {
            return Some(p);
        }
        start = p + key.len();
    }
    None
}

/// Column of the `n`-th item of a flow sequence whose content starts at `from`.
fn nth_flow_item(line: &str, from: usize, n: usize) -> Option<usize> {
    let mut depth = 0;
    let mut idx = 0;
    let mut item_start = from;
    for (off, ch) in line[from..].char_indices() {
        let p = from + off;
        match ch {
            '[' | '{' => depth += 1,
            ']' | '}' if depth == 0 => break,
            ']' | '}' => depth -= 1,
            ',' if depth == 0 => {
                if idx == n {
                    break;
                }
                idx += 1;
                item_start = p + 1;
            }
            _ => {}
        }
    }
    if idx != n {
        return None;
    }
    let skip = line[item_start..].len() - line[item_start..].trim_start().len();
    Some(item_start + skip)
}

#[cfg(test)]
mod tests {
    use super::Seg::*;
    use super::*;

    const Y: &str = "name: x\ndatasets:\n  - name: a\n    forget_classes: [0, 1, 99]\n    retain_classes:\n      - 3\n      - 4\n  - name: b\n    source: {kind: embedded, seed: 3}\nunlearn:\n  steps: 0\n";

    #[test]
    fn finds_block_and_flow_positions() {
        assert_eq!(locate(Y, &[Key("unlearn"), Key("steps")]), Some((11, 3)));
        assert_eq!(
            locate(Y, &[Key("datasets"), Idx(0), Key("forget_classes"), Idx(2)]),
            Some((4, 28))
        );
        assert_eq!(
            locate(Y, &[Key("datasets"), Idx(0), Key("retain_classes"), Idx(1)]),
            Some((7, 9))
        );
        assert_eq!(
            locate(Y, &[Key("datasets"), Idx(1), Key("name")]),
            Some((8, 5))
        );
        assert_eq!(
            locate(Y, &[Key("datasets"), Idx(1), Key("source"), Key("seed")]),
            Some((9, 30))
        );
        // Missing segment: deepest prefix found.
        assert_eq!(
            locate(Y, &[Key("datasets"), Idx(1), Key("eval_per_class")]),
            Some((8, 5))
        );
        assert_eq!(
            path_string(&[Key("datasets"), Idx(1), Key("name")]),
            "datasets[1].name"
        );
    }
}
