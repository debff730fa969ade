//! Reading values out of the Prometheus text exposition format: a metric's
//! samples are summed over all label sets (vLLM labels by model name).

/// The sum of every sample of `metric`, `None` when it has no sample.
pub fn sum(text: &str, metric: &str) -> Option<f64> {
    let mut total = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(metric) else {
            continue;
        };
        let after_labels = if let Some(labels) = rest.strip_prefix('{') {
            match skip_labels(labels) {
                Some(after) => after,
                None => continue,
            }
        } else if rest.starts_with(' ') || rest.starts_with('\t') {
            rest
        } else {
            continue; // a longer metric name with this one as prefix
        };
        let Some(value) = after_labels.split_whitespace().next().and_then(parse_value) else {
            continue;
        };
        *total.get_or_insert(0.0) += value;
    }
    total
}

/// Skip past the closing `}` of a label set, honouring quoted values.
fn skip_labels(s: &str) -> Option<&str> {
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '}' if !in_quotes => return Some(&s[i + 1..]),
            _ => {}
        }
    }
    None
}

fn parse_value(v: &str) -> Option<f64> {
    match v {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => v.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="llama-70b"} 3.0
vllm:num_requests_running{engine="1",model_name="we}ird \"x\""} 1.0
vllm:num_requests_waiting{engine="0",model_name="llama-70b"} 0.0
vllm:num_requests_waiting_by_reason{reason="capacity"} 7.0
"#;

    #[test]
    fn sums_samples_over_label_sets() {
        assert_eq!(sum(PAGE, "vllm:num_requests_running"), Some(4.0));
    }

    #[test]
    fn a_longer_name_with_the_same_prefix_does_not_count() {
        assert_eq!(sum(PAGE, "vllm:num_requests_waiting"), Some(0.0));
    }

    #[test]
    fn an_absent_metric_has_no_value() {
        assert_eq!(sum(PAGE, "vllm:gpu_cache_usage_perc"), None);
        assert_eq!(sum("plain 2\n", "plain"), Some(2.0));
    }
}
