//! Subjects: `<prefix>.<host>.<family>`, and whether a stream's subject filters cover them.

/// One subject token from free text (a host name may hold dots, which separate tokens, or
/// characters NATS does not allow): anything but `[A-Za-z0-9_-]` becomes `_`.
pub fn token(text: &str) -> String {
    let t: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if t.is_empty() { "_".into() } else { t }
}

/// The subject an event of `family` from `host` goes to.
pub fn of(prefix: &str, host: &str, family: &str) -> String {
    format!("{prefix}.{}.{}", token(host), token(family))
}

/// Every subject this host publishes to: `<prefix>.<host>.*`.
pub fn ours(prefix: &str, host: &str) -> String {
    format!("{prefix}.{}.*", token(host))
}

/// Whether every subject matching `pattern` also matches `filter` (NATS wildcards: `*` one
/// token, `>` one or more trailing tokens).
pub fn covers(filter: &str, pattern: &str) -> bool {
    let f: Vec<&str> = filter.split('.').collect();
    let p: Vec<&str> = pattern.split('.').collect();
    for (i, ft) in f.iter().enumerate() {
        match (*ft, p.get(i)) {
            (">", Some(_)) => return true,
            (_, None) => return false,
            ("*", Some(pt)) if *pt != ">" => {}
            (ft, Some(pt)) if ft == *pt && *pt != "*" && *pt != ">" => {}
            _ => return false,
        }
    }
    f.len() == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_become_one_token() {
        assert_eq!(token("web-1.example.com"), "web-1_example_com");
        assert_eq!(token("a b*>"), "a_b__");
        assert_eq!(token(""), "_");
        assert_eq!(of("mapscope", "h.x", "exec"), "mapscope.h_x.exec");
    }

    #[test]
    fn coverage() {
        let ours = ours("mapscope", "web1");
        assert_eq!(ours, "mapscope.web1.*");
        for yes in [
            "mapscope.>",
            ">",
            "mapscope.*.*",
            "mapscope.web1.*",
            "*.web1.>",
        ] {
            assert!(covers(yes, &ours), "{yes}");
        }
        for no in [
            "mapscope.web1.exec",
            "mapscope.web2.*",
            "mapscope.*",
            "other.>",
            "mapscope.web1.*.x",
            "mapscope.web1",
        ] {
            assert!(!covers(no, &ours), "{no}");
        }
        assert!(covers("mapscope.web1.exec", "mapscope.web1.exec"));
        assert!(!covers("mapscope.*.exec", "mapscope.>"));
    }
}
