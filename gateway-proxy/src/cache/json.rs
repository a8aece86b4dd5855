//! Small edits of raw JSON objects, in order: a field's removal, one object merged over another
//! (its fields replace or follow the base's), a field replaced. Values are never re-encoded.

use sonic_rs::JsonValueTrait;

/// `part` (a slice the parser handed back from `json`) as a slice of `json` itself, so that it
/// outlives the parser's value. `None` if it is not inside `json`.
fn within<'a>(json: &'a str, part: &str) -> Option<&'a str> {
    let start = (part.as_ptr() as usize).checked_sub(json.as_ptr() as usize)?;
    json.get(start..start.checked_add(part.len())?)
}

/// The top-level fields of object `json`, raw, in order (`None` if it is not an object).
pub(crate) fn fields(json: &str) -> Option<Vec<(String, &str)>> {
    let mut out = Vec::new();
    for item in sonic_rs::to_object_iter(json) {
        let (key, value) = item.ok()?;
        out.push((key.as_ref().to_owned(), within(json, value.as_raw_str())?));
    }
    Some(out)
}

/// The raw value of top-level field `key` of object `json`.
pub(crate) fn field<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    for item in sonic_rs::to_object_iter(json) {
        let (k, value) = item.ok()?;
        if k.as_ref() == key {
            return within(json, value.as_raw_str());
        }
    }
    None
}

/// A string field's value (unescaped).
pub(crate) fn str_field(json: &str, path: &[&str]) -> Option<String> {
    let value = sonic_rs::get_from_str(json, path).ok()?;
    value.as_str().map(str::to_owned)
}

/// Writes an object from raw fields.
pub(crate) fn object<'a>(fields: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::from("{");
    for (i, (key, value)) in fields.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        // Keys came from JSON already read as keys; they are written back escaped.
        out.push_str(&sonic_rs::to_string(key).unwrap_or_default());
        out.push(':');
        out.push_str(value);
    }
    out.push('}');
    out
}

/// `json` without the fields named in `drop`.
pub(crate) fn without(json: &str, drop: &[&str]) -> Option<String> {
    let fields = fields(json)?;
    Some(object(
        fields
            .iter()
            .filter(|(k, _)| !drop.contains(&k.as_str()))
            .map(|(k, v)| (k.as_str(), *v)),
    ))
}

/// `json` with field `key` set to the raw value `value` (in its place, or at the end), or taken
/// out (`None`).
pub(crate) fn with_field(json: &str, key: &str, value: Option<&str>) -> Option<String> {
    let mut fields = fields(json)?;
    match (fields.iter().position(|(k, _)| k == key), value) {
        (Some(i), Some(v)) => fields[i].1 = v,
        (Some(i), None) => {
            fields.remove(i);
        }
        (None, Some(v)) => fields.push((key.to_owned(), v)),
        (None, None) => {}
    }
    Some(object(fields.iter().map(|(k, v)| (k.as_str(), *v))))
}

/// `base` with `overlay`'s fields over it: a field of both takes the overlay's value in the
/// base's place, a field of the overlay alone follows; fields in `skip` of the overlay are not
/// taken.
pub(crate) fn merge(base: &str, overlay: &str, skip: &[&str]) -> Option<String> {
    let base = fields(base)?;
    let over: Vec<(String, &str)> = fields(overlay)?
        .into_iter()
        .filter(|(k, _)| !skip.contains(&k.as_str()))
        .collect();
    let taken = |key: &str| over.iter().find(|(k, _)| k == key).map(|(_, v)| *v);
    let mut out: Vec<(&str, &str)> = base
        .iter()
        .map(|(k, v)| (k.as_str(), taken(k).unwrap_or(v)))
        .collect();
    for (k, v) in &over {
        if !base.iter().any(|(b, _)| b == k) {
            out.push((k.as_str(), v));
        }
    }
    Some(object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_keep_the_base_order_and_add_the_rest() {
        let merged = merge(
            r#"{"a":1,"b":{"x":2},"c":3}"#,
            r#"{"b":null,"d":[4],"g":"s"}"#,
            &["g"],
        );
        assert_eq!(merged.as_deref(), Some(r#"{"a":1,"b":null,"c":3,"d":[4]}"#));
        assert_eq!(
            without(r#"{"guild_id":"1","id":"2"}"#, &["guild_id"]).as_deref(),
            Some(r#"{"id":"2"}"#)
        );
        assert_eq!(field(r#"{"a":{"b":1}}"#, "a"), Some(r#"{"b":1}"#));
        assert_eq!(
            str_field(r#"{"u":{"id":"7"}}"#, &["u", "id"]).as_deref(),
            Some("7")
        );
        assert_eq!(merge("[1]", "{}", &[]), None);
        assert_eq!(
            with_field(r#"{"a":1,"nonce":"x","b":2}"#, "nonce", Some(r#""y""#)).as_deref(),
            Some(r#"{"a":1,"nonce":"y","b":2}"#)
        );
        assert_eq!(
            with_field(r#"{"nonce":"x"}"#, "nonce", None).as_deref(),
            Some("{}")
        );
    }
}
