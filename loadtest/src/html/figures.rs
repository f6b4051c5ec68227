//! One figure of the HTML report: what it is called, how it reads, and where it is in
//! `--json` (a JSON pointer, RFC 6901) with its exact value, so the page can be checked
//! against the JSON of the same run.

/// A figure the page shows.
pub(crate) struct Figure {
    /// What it is.
    pub(crate) label: String,
    /// How it reads on the page (milliseconds to two decimals, say).
    pub(crate) shown: String,
    /// Its place in `--json`, when it has one (a replica with no request in a second has none).
    pub(crate) pointer: Option<String>,
    /// Its exact value, as `--json` has it: an integer, a float that parses back to the same
    /// `f64`, or a string.
    pub(crate) value: String,
}

impl Figure {
    /// A count.
    pub(crate) fn count(label: &str, pointer: String, n: u64) -> Figure {
        Figure {
            label: label.to_owned(),
            shown: n.to_string(),
            pointer: Some(pointer),
            value: n.to_string(),
        }
    }

    /// A number, shown with at most two decimals (`Display` of `f64` is its shortest exact
    /// form, so `value` parses back to the same number as the JSON's).
    pub(crate) fn float(label: &str, pointer: String, x: f64) -> Figure {
        let shown = format!("{x:.2}");
        let shown = shown.trim_end_matches('0').trim_end_matches('.').to_owned();
        Figure {
            label: label.to_owned(),
            shown,
            pointer: Some(pointer),
            value: x.to_string(),
        }
    }

    /// A latency in milliseconds.
    pub(crate) fn ms(label: &str, pointer: String, ms: f64) -> Figure {
        Figure {
            label: label.to_owned(),
            shown: format!("{ms:.2} ms"),
            pointer: Some(pointer),
            value: ms.to_string(),
        }
    }

    /// A string.
    pub(crate) fn text(label: &str, pointer: &str, text: &str) -> Figure {
        Figure {
            label: label.to_owned(),
            shown: text.to_owned(),
            pointer: Some(pointer.to_owned()),
            value: text.to_owned(),
        }
    }

    /// A value `--json` leaves `null` (no latency measured in that second).
    pub(crate) fn absent(label: &str) -> Figure {
        Figure {
            label: label.to_owned(),
            shown: "–".to_owned(),
            pointer: None,
            value: String::new(),
        }
    }

    /// A count `--json` leaves out because it is zero (a replica idle for a second).
    pub(crate) fn zero(label: &str) -> Figure {
        Figure {
            label: label.to_owned(),
            shown: "0".to_owned(),
            pointer: None,
            value: "0".to_owned(),
        }
    }
}

/// The JSON pointer to `parts`, each escaped (`~` as `~0`, `/` as `~1`).
pub(crate) fn pointer(parts: &[&str]) -> String {
    parts
        .iter()
        .map(|part| format!("/{}", part.replace('~', "~0").replace('/', "~1")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_escape_slashes_and_tildes() {
        assert_eq!(
            pointer(&["requests_per_replica", "a/b~c"]),
            "/requests_per_replica/a~1b~0c"
        );
        let json = serde_json::json!({"requests_per_replica": {"a/b~c": 3}});
        assert_eq!(
            json.pointer(&pointer(&["requests_per_replica", "a/b~c"])),
            Some(&serde_json::json!(3))
        );
    }

    #[test]
    fn floats_keep_their_exact_value_and_read_short() {
        let figure = Figure::float("req/s", "/req_per_s".to_owned(), 1234.5678901);
        assert_eq!(figure.shown, "1234.57");
        assert_eq!(figure.value.parse::<f64>().ok(), Some(1234.5678901));
        assert_eq!(Figure::float("x", String::new(), 2.0).shown, "2");
    }
}
