//! The diff schema: `{"old_value": {..}, "new_value": {..}}` holding only what changed.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use crate::limits;

/// Text stored instead of a masked field's value, in old and new alike.
pub const FILTERED: &str = "***FILTERED***";

/// The changed fields of one write: their values before (`old_value`) and after (`new_value`).
///
/// A field that exists on one side only (a create, a delete, or a key added to a JSON object)
/// appears on that side only. Serializes exactly as django-simple-eventlog's
/// `create_diff_schema`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Changes {
    /// Values before the write, of the fields that changed.
    pub old_value: Map<String, Json>,
    /// Values after the write, of the fields that changed.
    pub new_value: Map<String, Json>,
}

impl Changes {
    /// True when nothing changed.
    pub fn is_empty(&self) -> bool {
        self.old_value.is_empty() && self.new_value.is_empty()
    }

    /// Names of the changed fields, in a stable (sorted) order.
    pub fn fields(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .old_value
            .keys()
            .chain(self.new_value.keys())
            .map(String::as_str)
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// The diff schema as JSON: `{"old_value": {..}, "new_value": {..}}`.
    pub fn into_json(self) -> Json {
        let mut out = Map::with_capacity(2);
        out.insert("old_value".into(), Json::Object(self.old_value));
        out.insert("new_value".into(), Json::Object(self.new_value));
        Json::Object(out)
    }

    /// Replaces the values of `masked` fields with [`FILTERED`] on both sides. NULL stays
    /// `null`: it hides nothing, and it lets a restore put the NULL back.
    pub fn mask(&mut self, masked: &[&str]) {
        for side in [&mut self.old_value, &mut self.new_value] {
            for key in masked {
                if let Some(v) = side.get_mut(*key).filter(|v| !v.is_null()) {
                    *v = Json::String(FILTERED.to_owned());
                }
            }
        }
    }
}

/// Builds the diff of two JSON objects, ignoring `exclude` keys.
///
/// ```
/// use serde_json::json;
/// let old = json!({"name": "John", "status": "active"});
/// let new = json!({"name": "John", "status": "inactive", "updated_at": "now"});
/// let diff = sea_orm_audit::diff(&old, &new, &["updated_at"]);
/// assert_eq!(
///     serde_json::to_value(&diff).unwrap(),
///     json!({"old_value": {"status": "active"}, "new_value": {"status": "inactive"}})
/// );
/// ```
///
/// Anything that is not a JSON object counts as an empty object.
pub fn diff(old: &Json, new: &Json, exclude: &[&str]) -> Changes {
    let empty = Map::new();
    let old = old.as_object().unwrap_or(&empty);
    let new = new.as_object().unwrap_or(&empty);
    diff_maps(old, new, exclude)
}

/// [`diff`] on two maps.
pub fn diff_maps(old: &Map<String, Json>, new: &Map<String, Json>, exclude: &[&str]) -> Changes {
    let mut changes = Changes::default();
    let kept = |k: &String| !exclude.contains(&k.as_str());
    for (key, old_v) in old.iter().filter(|(k, _)| kept(k)) {
        let old_v = recorded(old_v);
        match new.get(key).map(recorded) {
            Some(new_v) if new_v == old_v => {}
            Some(new_v) => {
                changes.old_value.insert(key.clone(), old_v.into_owned());
                changes.new_value.insert(key.clone(), new_v.into_owned());
            }
            None => {
                changes.old_value.insert(key.clone(), old_v.into_owned());
            }
        }
    }
    for (key, new_v) in new.iter().filter(|(k, _)| kept(k)) {
        if !old.contains_key(key) {
            changes
                .new_value
                .insert(key.clone(), recorded(new_v).into_owned());
        }
    }
    changes
}

/// A value as the log records it: a value nested too deep becomes its marker (see
/// [`crate::TOO_DEEP`]) before it is compared, since comparing and copying recurse.
fn recorded(value: &Json) -> Cow<'_, Json> {
    if limits::deeper_than(value, limits::MAX_JSON_DEPTH) {
        Cow::Owned(limits::bounded(value))
    } else {
        Cow::Borrowed(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn create_update_delete_shapes() {
        let row = json!({"id": 1, "title": "a"});
        let create = diff(&json!({}), &row, &[]);
        assert_eq!(
            serde_json::to_value(&create).unwrap(),
            json!({"old_value": {}, "new_value": row})
        );
        let delete = diff(&row, &json!({}), &[]);
        assert_eq!(
            serde_json::to_value(&delete).unwrap(),
            json!({"old_value": row, "new_value": {}})
        );
        assert!(diff(&row, &row, &[]).is_empty());
    }

    #[test]
    fn masks_changed_values_on_both_sides() {
        let mut d = diff(
            &json!({"pw": "a", "x": 1}),
            &json!({"pw": "b", "x": 1}),
            &[],
        );
        d.mask(&["pw"]);
        assert_eq!(d.old_value["pw"], json!(FILTERED));
        assert_eq!(d.new_value["pw"], json!(FILTERED));
        assert_eq!(d.fields(), vec!["pw"]);
    }

    #[test]
    fn masking_keeps_null() {
        let mut d = diff(&json!({"pw": null}), &json!({"pw": "set"}), &[]);
        d.mask(&["pw"]);
        assert_eq!(d.old_value["pw"], Json::Null);
        assert_eq!(d.new_value["pw"], json!(FILTERED));
    }

    #[test]
    fn null_and_missing_differ() {
        let d = diff(&json!({"a": null}), &json!({}), &[]);
        assert_eq!(d.old_value["a"], Json::Null);
        assert!(d.new_value.is_empty());
    }
}
