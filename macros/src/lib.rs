//! Derive macro for [`sea-orm-audit`](https://docs.rs/sea-orm-audit). Use it through the
//! re-export `sea_orm_audit::Auditable`.

use proc_macro::TokenStream;

mod auditable;

/// Implements `sea_orm_audit::Auditable` for a SeaORM `Model`.
///
/// Struct attributes: `#[audit(entity_type = "name", exclude(field, ..), mask(field, ..),
/// log_unchanged, capture = "database", seal = "deferred")]`. Field attributes: `#[audit(exclude)]`, `#[audit(mask)]`. Names are the
/// model's field names; each becomes the entity's `Column` variant for that field, so the
/// column name is always the one SeaORM uses. A name that is not a column of the model is a
/// compile error.
#[proc_macro_derive(Auditable, attributes(audit))]
pub fn derive_auditable(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    auditable::derive(&input).into()
}
