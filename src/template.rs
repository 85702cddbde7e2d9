//! Templated messages: `"Item {item} was updated by {user}"` with named values.

use serde_json::{Map, Value as Json};

use crate::auditable::Auditable;
use crate::error::Error;

/// How a model appears in a message. Implement it for your models (a title, a user's name);
/// it is also implemented for the common plain types.
pub trait Describe {
    /// The text a message shows for this value.
    fn describe(&self) -> String;
}

impl Describe for str {
    fn describe(&self) -> String {
        self.to_owned()
    }
}

impl Describe for String {
    fn describe(&self) -> String {
        self.clone()
    }
}

impl<T: Describe + ?Sized> Describe for &T {
    fn describe(&self) -> String {
        (**self).describe()
    }
}

macro_rules! describe_display {
    ($($t:ty),*) => {$(
        impl Describe for $t {
            fn describe(&self) -> String {
                self.to_string()
            }
        }
    )*};
}
describe_display!(
    i8, i16, i32, i64, u8, u16, u32, u64, usize, isize, f32, f64, bool, char
);

/// A message template with its values. Placeholders are `{name}`; write `{{` and `}}` for
/// literal braces. The rendered text is stored as the entry's message; the template and the
/// values are kept in its `data` (`"template"`, `"values"`).
///
/// ```
/// use sea_orm_audit::Template;
/// let t = Template::new("Item {item} was updated by {user}.").value("item", "Lamp").value("user", "Bob");
/// assert_eq!(t.render().unwrap(), "Item Lamp was updated by Bob.");
/// let missing = Template::new("Hello {who}").render().unwrap_err();
/// assert!(missing.to_string().contains("no value for placeholder {who}"));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct Template {
    text: String,
    /// name -> (rendered text, stored JSON)
    values: Vec<(String, String, Json)>,
}

impl Template {
    /// A template with no values yet.
    pub fn new(text: impl Into<String>) -> Self {
        Template {
            text: text.into(),
            values: Vec::new(),
        }
    }

    /// Adds a plain value (anything [`Describe`], e.g. text or a number).
    pub fn value(mut self, name: impl Into<String>, value: impl Describe) -> Self {
        let text = value.describe();
        let name = name.into();
        self.values.retain(|(n, _, _)| *n != name);
        self.values.push((name, text.clone(), Json::String(text)));
        self
    }

    /// Adds a model: rendered through [`Describe`]; stored with its entity type and id, so the
    /// entry keeps a reference to it even if it is renamed or deleted later.
    pub fn object<M: Auditable + Describe>(mut self, name: impl Into<String>, model: &M) -> Self {
        let text = model.describe();
        let mut stored = Map::new();
        stored.insert("entity_type".into(), M::entity_type().into());
        stored.insert("object_id".into(), model.audit_object_id().into());
        stored.insert("text".into(), text.clone().into());
        let name = name.into();
        self.values.retain(|(n, _, _)| *n != name);
        self.values.push((name, text, Json::Object(stored)));
        self
    }

    /// The template text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The message, or an error naming the first placeholder without a value (or a stray brace).
    pub fn render(&self) -> Result<String, Error> {
        let invalid = |reason: String| Error::BadTemplate {
            template: self.text.clone(),
            reason,
        };
        let mut out = String::with_capacity(self.text.len() + 16);
        let mut chars = self.text.char_indices().peekable();
        while let Some((at, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|(_, c)| *c) == Some('{') => {
                    chars.next();
                    out.push('{');
                }
                '}' if chars.peek().map(|(_, c)| *c) == Some('}') => {
                    chars.next();
                    out.push('}');
                }
                '{' => {
                    let rest = &self.text[at + 1..];
                    let Some(end) = rest.find('}') else {
                        return Err(invalid(format!(
                            "unclosed {{ at byte {at} in {:?}",
                            self.text
                        )));
                    };
                    let name = &rest[..end];
                    if name.is_empty() || name.contains('{') {
                        return Err(invalid(format!(
                            "bad placeholder {{{name}}} in {:?}",
                            self.text
                        )));
                    }
                    let Some((_, text, _)) = self.values.iter().find(|(n, _, _)| n == name) else {
                        return Err(invalid(format!(
                            "no value for placeholder {{{name}}} in {:?}",
                            self.text
                        )));
                    };
                    out.push_str(text);
                    for _ in 0..name.chars().count() + 1 {
                        chars.next();
                    }
                }
                '}' => {
                    return Err(invalid(format!(
                        "unmatched }} at byte {at} in {:?}",
                        self.text
                    )));
                }
                c => out.push(c),
            }
        }
        Ok(out)
    }

    /// `{"template": .., "values": {..}}`, kept in the entry's data.
    pub(crate) fn to_data(&self) -> (Json, Json) {
        let values: Map<String, Json> = self
            .values
            .iter()
            .map(|(n, _, v)| (n.clone(), v.clone()))
            .collect();
        (Json::String(self.text.clone()), Json::Object(values))
    }
}

#[cfg(test)]
mod tests {
    use super::Template;

    #[test]
    fn renders_escapes_and_rejects_bad_templates() {
        let t = Template::new("{{literal}} {a}-{b} ✓ {a}")
            .value("a", 1)
            .value("b", "x");
        assert_eq!(t.render().unwrap(), "{literal} 1-x ✓ 1");
        for bad in ["{", "}", "{}", "a {b", "{missing}"] {
            let err = Template::new(bad).value("b", 2).render();
            assert!(err.is_err(), "{bad:?}");
        }
        // A later value for the same name replaces the earlier one.
        assert_eq!(
            Template::new("{a}")
                .value("a", 1)
                .value("a", 2)
                .render()
                .unwrap(),
            "2"
        );
    }
}
