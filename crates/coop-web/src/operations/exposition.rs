//! Reads the Prometheus text exposition this process renders for `/metrics`
//! (our own exporter's output, so well-formed): one `(name, labels, value)`
//! per sample line. Label values may hold anything a route template holds,
//! braces included (`route="/api/v1/families/{id}"`), and escapes.

pub struct Line<'a> {
    pub name: &'a str,
    pub labels: Vec<(&'a str, String)>,
    pub value: f64,
}

impl Line<'_> {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Every sample line of `text`; comments, blank and unreadable lines are
/// passed over.
pub fn lines(text: &str) -> impl Iterator<Item = Line<'_>> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(parse_line)
}

fn parse_line(line: &str) -> Option<Line<'_>> {
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    let mut labels = Vec::new();
    let mut rest = &line[name_end..];
    if let Some(after) = rest.strip_prefix('{') {
        rest = after;
        loop {
            rest = rest.trim_start_matches([',', ' ']);
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let eq = rest.find('=')?;
            let key = rest[..eq].trim();
            let (value, after) = quoted(rest[eq + 1..].strip_prefix('"')?)?;
            labels.push((key, value));
            rest = after;
        }
    }
    // The value, then an optional timestamp.
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().ok()?,
    };
    Some(Line {
        name,
        labels,
        value,
    })
}

/// A label value up to its closing quote (the opening one already taken),
/// unescaped; and what follows it.
fn quoted(text: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((value, &text[i + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => value.push('\n'),
                other => value.push(other),
            },
            other => value.push(other),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_names_labels_and_values() {
        let text = "# TYPE http_requests_total counter\n\
            http_requests_total{method=\"GET\",route=\"/api/v1/families/{id}\",status=\"200\"} 42\n\
            \n\
            cache_subscribed 1\n\
            odd{quote=\"say \\\"hi\\\"\",slash=\"a\\\\b\"} 0.5 1700000000000\n\
            http_request_duration_seconds_bucket{le=\"+Inf\"} 7\n\
            broken{unterminated=\"x} 1\n";
        let lines: Vec<Line> = lines(text).collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0].name, "http_requests_total");
        assert_eq!(lines[0].label("route"), Some("/api/v1/families/{id}"));
        assert_eq!(lines[0].label("status"), Some("200"));
        assert_eq!(lines[0].value, 42.0);
        assert_eq!(lines[1].name, "cache_subscribed");
        assert!(lines[1].labels.is_empty());
        assert_eq!(lines[2].label("quote"), Some("say \"hi\""));
        assert_eq!(lines[2].label("slash"), Some("a\\b"));
        assert_eq!(lines[2].value, 0.5);
        assert_eq!(lines[3].label("le"), Some("+Inf"));
    }
}
