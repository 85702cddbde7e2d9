//! Request ids: which id a request carries, through tower-http's [`MakeRequestId`], so that the
//! audit entries, the response header and tower-http's request-id layers agree on one id.

use http::{HeaderValue, Request};
use tower_http::request_id::{MakeRequestId, RequestId};

/// The request id header, read from requests and set on every response.
pub const REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

/// The default [`MakeRequestId`] of [`AuditLayer`](super::AuditLayer): random (version 4)
/// UUIDs, like tower-http's `MakeRequestUuid`, from a per-thread generator seeded by the
/// operating system. Request ids need to be unique, not secret, and asking the operating system
/// for randomness on every request costs a system call.
#[derive(Debug, Clone, Copy, Default)]
pub struct FastRequestUuid;

impl MakeRequestId for FastRequestUuid {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        HeaderValue::from_str(&new_uuid()).ok().map(RequestId::new)
    }
}

/// The id of `request`, the first acceptable of: tower-http's [`RequestId`] extension (an outer
/// `SetRequestIdLayer` set it, whatever its header), the `x-request-id` header, the id `make`
/// gives, a new UUID. The request goes on carrying that id as its `RequestId` extension and
/// its `x-request-id` header, so inner layers (tower-http's `PropagateRequestIdLayer`, a trace
/// span) and the handler see the id the audit entries record.
pub(crate) fn assign<B, M: MakeRequestId>(request: &mut Request<B>, make: &mut M) -> String {
    let incoming = request
        .extensions()
        .get::<RequestId>()
        .map(RequestId::header_value)
        .into_iter()
        .chain(request.headers().get(&REQUEST_ID))
        .find_map(acceptable);
    let id = incoming
        .or_else(|| {
            make.make_request_id(request)
                .and_then(|id| acceptable(id.header_value()))
        })
        .unwrap_or_else(new_uuid);
    if let Ok(value) = HeaderValue::from_str(&id) {
        request.headers_mut().insert(REQUEST_ID, value.clone());
        request.extensions_mut().insert(RequestId::new(value));
    }
    id
}

/// The id in `value` if it is a sensible id (1 to 128 characters of letters, digits and
/// `-_.:/+=@`): the id is stored and echoed, so a client must not be able to inject arbitrary
/// text through it.
fn acceptable(value: &HeaderValue) -> Option<String> {
    let id = value.to_str().ok()?;
    let sensible = (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=@".contains(&b));
    sensible.then(|| id.to_owned())
}

/// A random (version 4) UUID from a per-thread splitmix64 generator seeded by the OS.
fn new_uuid() -> String {
    thread_local! {
        static STATE: std::cell::Cell<u64> = std::cell::Cell::new({
            let seed = uuid::Uuid::new_v4().as_u64_pair();
            seed.0 ^ seed.1.rotate_left(32)
        });
    }
    // splitmix64: two outputs make the 128 bits.
    let next = |state: &std::cell::Cell<u64>| {
        let mut z = state.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        state.set(z);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let (hi, lo) = STATE.with(|s| (next(s), next(s)));
    let bytes = ((u128::from(hi) << 64) | u128::from(lo)).to_be_bytes();
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string()
}

/// Sets the `x-request-id` header of a response.
pub(crate) fn echo(headers: &mut http::HeaderMap, id: &str) {
    if let Ok(value) = HeaderValue::from_str(id) {
        headers.insert(REQUEST_ID, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(header: Option<&str>) -> Request<()> {
        let mut builder = Request::builder();
        if let Some(id) = header {
            builder = builder.header(REQUEST_ID, id);
        }
        builder.body(()).unwrap()
    }

    /// A maker that hands out `fixed` (or nothing) and counts its calls.
    #[derive(Clone)]
    struct Fixed(Option<&'static str>, usize);

    impl MakeRequestId for Fixed {
        fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
            self.1 += 1;
            self.0
                .map(|id| RequestId::new(HeaderValue::from_static(id)))
        }
    }

    #[test]
    fn an_acceptable_incoming_id_wins_and_the_maker_is_not_asked() {
        let mut make = Fixed(Some("made"), 0);
        let mut req = request(Some("client-1"));
        assert_eq!(assign(&mut req, &mut make), "client-1");
        assert_eq!(make.1, 0);
        // An outer tower-http layer's extension wins over the header.
        let mut req = request(Some("client-1"));
        req.extensions_mut()
            .insert(RequestId::new(HeaderValue::from_static("outer-7")));
        assert_eq!(assign(&mut req, &mut make), "outer-7");
        assert_eq!(req.headers()[REQUEST_ID], "outer-7");
    }

    #[test]
    fn unacceptable_ids_fall_through_to_the_maker_then_a_uuid() {
        let mut make = Fixed(Some("made-1"), 0);
        for bad in ["", "has space", "<script>", &"x".repeat(129)] {
            let mut req = request(Some(bad));
            assert_eq!(assign(&mut req, &mut make), "made-1", "{bad:?}");
            assert_eq!(req.headers()[REQUEST_ID], "made-1");
            assert_eq!(
                req.extensions().get::<RequestId>().unwrap().header_value(),
                "made-1"
            );
        }
        assert_eq!(make.1, 4);
        for mut make in [Fixed(None, 0), Fixed(Some("not ok"), 0)] {
            let id = assign(&mut request(None), &mut make);
            let uuid = uuid::Uuid::parse_str(&id).unwrap();
            assert_eq!(uuid.get_version_num(), 4);
            assert_eq!(make.1, 1);
        }
    }

    #[test]
    fn fast_uuids_are_version_4_and_distinct() {
        let ids: std::collections::HashSet<String> = (0..1000)
            .map(|_| {
                let id = FastRequestUuid.make_request_id(&request(None)).unwrap();
                id.header_value().to_str().unwrap().to_owned()
            })
            .collect();
        assert_eq!(ids.len(), 1000);
        for id in &ids {
            assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 4);
        }
    }
}
