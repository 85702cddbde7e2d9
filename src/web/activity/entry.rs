//! A finished request turned into its activity entry: masked, capped and sized in the writer
//! task, off the response path.

use std::net::IpAddr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use http::{HeaderMap, HeaderName, Method};
use serde_json::{Map, Value as Json, json};

use super::note::ActivityNote;
use super::{API_ENTITY, Config, Enrich};
use crate::diff::FILTERED;
use crate::store::NewEntry;
use crate::web::batch::Prepared;
use crate::web::body::Capture;
use crate::web::limits;
use crate::web::mask::{Sensitive, mask_json_text, mask_query, mask_value};
use crate::web::writer::Pending;
use crate::{Action, Status};

/// Everything known about a request when its response is done. Turned into an entry by the
/// writer task, so masking and JSON work stay off the response path.
#[derive(Debug)]
pub(crate) struct Captured {
    pub(crate) config: Arc<Config>,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) request_id: String,
    pub(crate) actor: Option<String>,
    /// The request's audit context data (request id, IP, copied claims, an outer scope's).
    pub(crate) context: Map<String, Json>,
    pub(crate) method: Method,
    /// The path as requested, or the absolute URI (not yet masked).
    pub(crate) path: String,
    pub(crate) route: Option<String>,
    pub(crate) status: u16,
    pub(crate) duration_ms: f64,
    pub(crate) ip: Option<IpAddr>,
    /// The recorded headers, values joined and capped (see [`capture_headers`]).
    pub(crate) headers: Vec<(HeaderName, String)>,
    pub(crate) request: Capture,
    pub(crate) request_type: Option<String>,
    pub(crate) response: Capture,
    pub(crate) response_type: Option<String>,
    pub(crate) complete: bool,
    pub(crate) note: Option<ActivityNote>,
    /// Why the entry lost its bodies before it was queued, if it did.
    pub(crate) reduced: Option<&'static str>,
}

/// The values of the recorded headers, all values of a name joined, each cut to
/// [`limits::MAX_HEADER`] bytes: a 300 KB `User-Agent` costs 1 KiB in the queue and in the row.
pub(crate) fn capture_headers(
    headers: &HeaderMap,
    names: &[HeaderName],
) -> Vec<(HeaderName, String)> {
    names
        .iter()
        .filter_map(|name| {
            let mut values = headers.get_all(name).iter().peekable();
            values.peek()?;
            let joined: Vec<&str> = values.map(|v| v.to_str().unwrap_or("(not text)")).collect();
            Some((
                name.clone(),
                limits::cap_bytes(&joined.join(", "), limits::MAX_HEADER),
            ))
        })
        .collect()
}

/// The action a method stands for.
pub(crate) fn action_for(method: &Method) -> Action {
    match *method {
        Method::GET | Method::HEAD => Action::Read,
        Method::POST => Action::Create,
        Method::PUT | Method::PATCH => Action::Update,
        Method::DELETE => Action::Delete,
        ref other => Action::Custom(other.as_str().to_ascii_lowercase()),
    }
}

/// Whether a content type is `application/x-www-form-urlencoded`, what HTML forms send.
pub(crate) fn is_form(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|ct| {
        ct.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .eq_ignore_ascii_case("application/x-www-form-urlencoded")
    })
}

/// Whether a content type is JSON (`application/json`, `application/problem+json`...).
pub(crate) fn is_json(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|ct| {
        let essence = ct.split(';').next().unwrap_or("").trim();
        let Some((_, subtype)) = essence.split_once('/') else {
            return false;
        };
        subtype.eq_ignore_ascii_case("json")
            || subtype
                .rsplit_once('+')
                .is_some_and(|(_, suffix)| suffix.eq_ignore_ascii_case("json"))
    })
}

/// Bytes of an entry that do not depend on the request (keys, ids, times, numbers).
const FIXED_BYTES: usize = 512;

impl Pending for Captured {
    fn approx_bytes(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len())
            .sum();
        FIXED_BYTES
            + self.path.len()
            + headers
            + crate::limits::map_size(&self.context)
            + self.request.bytes.len()
            + self.response.bytes.len()
    }

    fn drop_bodies(&mut self, reason: &'static str) {
        self.request.forget();
        self.response.forget();
        self.reduced = Some(reason);
    }

    fn prepare(self: Box<Self>) -> Prepared {
        self.into_entry()
    }
}

impl Captured {
    fn into_entry(self) -> Prepared {
        let c = &*self.config;
        let event = self.route.as_deref().map(|route| {
            c.event_names
                .get(&format!("{} {route}", self.method))
                .or_else(|| c.event_names.get(route))
                .cloned()
                .unwrap_or_else(|| route.to_owned())
        });
        let path = mask_query(&self.path, &c.sensitive);
        let method = limits::cap_chars(self.method.as_str(), limits::MAX_METHOD);
        let mut data = self.context;
        data.insert("method".into(), method.clone().into());
        data.insert("path".into(), path.clone().into());
        data.insert("route".into(), self.route.clone().into());
        data.insert("event".into(), event.clone().into());
        data.insert("status_code".into(), self.status.into());
        data.insert("duration_ms".into(), json!(self.duration_ms));
        data.insert("ip".into(), self.ip.map(|ip| ip.to_string()).into());
        data.insert("request_id".into(), self.request_id.clone().into());
        let headers: Map<String, Json> = self
            .headers
            .into_iter()
            .map(|(name, value)| {
                let value = if sensitive_header(&name, &c.sensitive) {
                    FILTERED.to_owned()
                } else {
                    value
                };
                (name.as_str().to_owned(), value.into())
            })
            .collect();
        data.insert("headers".into(), Json::Object(headers));
        if let Some(body) = body_json(&self.request, self.request_type.as_deref(), c) {
            data.insert("request_body".into(), body);
        }
        if let Some(body) = body_json(&self.response, self.response_type.as_deref(), c) {
            data.insert("response_body".into(), body);
        }
        if !self.complete {
            data.insert("response_incomplete".into(), true.into());
        }
        let mut message = None;
        let mut actor = self.actor;
        let mut action = self
            .route
            .as_deref()
            .and_then(|route| {
                c.actions
                    .get(&format!("{} {route}", self.method))
                    .or_else(|| c.actions.get(route))
            })
            .cloned()
            .unwrap_or_else(|| action_for(&self.method));
        if let Some(note) = self.note {
            actor = actor.or(note.actor);
            action = note.action.unwrap_or(action);
            if let Some((entity_type, object_id)) = note.target {
                data.insert(
                    "target".into(),
                    json!({"entity_type": entity_type, "object_id": object_id}),
                );
            }
            message = note.message;
        }
        if let Some(reason) = self.reduced {
            data.insert("reduced".into(), reason.into());
        }
        if let Some(Enrich(f)) = &c.enrich {
            f(&mut data);
        }
        let action = match action {
            Action::Custom(name) => Action::Custom(limits::cap_chars(&name, limits::MAX_METHOD)),
            standard => standard,
        };
        let mut entry = NewEntry::new(API_ENTITY, self.request_id, action);
        entry.actor = actor.map(|a| limits::column(a, limits::MAX_ID));
        entry.tool = c.tool.clone().map(|t| limits::column(t, limits::MAX_ID));
        entry.status = if self.status < 400 {
            Status::Success
        } else {
            Status::Failed
        };
        let message = message.unwrap_or_else(|| format!("{method} {path} → {}", self.status));
        entry.message = Some(limits::cap_bytes(
            &limits::no_nul(message),
            limits::MAX_MESSAGE,
        ));
        entry.created_at = Some(self.created_at);
        let mut reduced = self.reduced.is_some();
        let texts = [&entry.message, &entry.actor, &entry.tool];
        let fixed = FIXED_BYTES
            + entry.object_id.len()
            + texts
                .iter()
                .map(|t| t.as_ref().map_or(0, String::len))
                .sum::<usize>();
        let mut bytes = limits::sanitize_map(&mut data, 0) + fixed;
        if bytes > limits::MAX_ENTRY_BYTES {
            bytes = limits::json_len(&data) + fixed;
            if bytes > limits::MAX_ENTRY_BYTES {
                reduced = true;
                data.insert("reduced".into(), ENTRY_TOO_LARGE.into());
                for key in ["request_body", "response_body"] {
                    if let Some(body) = data.get_mut(key) {
                        *body = json!({"omitted": true, "json_bytes": limits::json_len(&*body)});
                    }
                }
                bytes = limits::json_len(&data) + fixed;
            }
        }
        entry.data = data;
        if bytes > limits::MAX_ENTRY_BYTES {
            // Still too large without its bodies: context data or `enrich` did this.
            entry = limits::reduced(&entry, ENTRY_TOO_LARGE);
            bytes = limits::json_len(&entry.data) + fixed;
        }
        Prepared {
            entry,
            bytes,
            reduced,
        }
    }
}

/// Why an entry lost its bodies (or more) before it was written.
const ENTRY_TOO_LARGE: &str = "entry larger than 256 KiB";

fn sensitive_header(name: &HeaderName, sensitive: &Sensitive) -> bool {
    matches!(
        name.as_str(),
        "authorization" | "proxy-authorization" | "cookie" | "set-cookie"
    ) || sensitive.matches(name.as_str())
}

/// A body as stored: masked JSON, a masked prefix of JSON text, or just its size.
fn body_json(capture: &Capture, content_type: Option<&str>, c: &Config) -> Option<Json> {
    if capture.total == 0 {
        return None;
    }
    if !capture.kept() {
        return Some(json!({"content_type": content_type, "bytes": capture.total}));
    }
    if !capture.truncated() && is_form(content_type) {
        // A form body as a JSON object of its fields (a repeated field: an array), masked
        // like JSON.
        let mut fields = Map::new();
        for (key, value) in form_urlencoded::parse(&capture.bytes) {
            let value = Json::String(value.into_owned());
            match fields.get_mut(key.as_ref()) {
                Some(Json::Array(items)) => items.push(value),
                Some(first) => *first = Json::Array(vec![first.take(), value]),
                None => {
                    fields.insert(key.into_owned(), value);
                }
            }
        }
        let mut value = Json::Object(fields);
        mask_value(&mut value, &c.sensitive);
        return Some(value);
    }
    if !capture.truncated()
        && let Ok(mut value) = serde_json::from_slice::<Json>(&capture.bytes)
    {
        mask_value(&mut value, &c.sensitive);
        return Some(value);
    }
    // Cut short, or not valid JSON: keep the text, masked, and say so.
    let text = match std::str::from_utf8(&capture.bytes) {
        Ok(text) => text.to_owned(),
        Err(e) => {
            let valid = e.valid_up_to();
            String::from_utf8_lossy(&capture.bytes[..valid]).into_owned()
        }
    };
    let kind = if capture.truncated() {
        "truncated"
    } else {
        "invalid_json"
    };
    Some(json!({
        kind: true,
        "bytes": capture.total,
        "text": mask_json_text(&text, &c.sensitive),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        assert!(is_json(Some("application/json")));
        assert!(is_json(Some("application/json; charset=utf-8")));
        assert!(is_json(Some("application/problem+json")));
        assert!(is_json(Some("Application/JSON")));
        assert!(!is_json(Some("text/html")));
        assert!(!is_json(Some("application/jsonp")));
        assert!(!is_json(Some("json")));
        assert!(!is_json(None));
    }

    #[test]
    fn methods_map_to_actions() {
        assert_eq!(action_for(&Method::GET), Action::Read);
        assert_eq!(action_for(&Method::POST), Action::Create);
        assert_eq!(action_for(&Method::PUT), Action::Update);
        assert_eq!(action_for(&Method::PATCH), Action::Update);
        assert_eq!(action_for(&Method::DELETE), Action::Delete);
        assert_eq!(
            action_for(&Method::OPTIONS),
            Action::Custom("options".into())
        );
    }
}
