//! Derive macro for [`sea-orm-audit`](https://docs.rs/sea-orm-audit). Use it through the
//! re-export `sea_orm_audit::Auditable`.

use proc_macro::TokenStream;

mod auditable;

/// Implements `sea_orm_audit::Auditable` for a SeaORM `Model`.
///
/// Struct attributes: `#[audit(entity_type = "name", exclude(col, ..), mask(col, ..),
/// log_unchanged)]`. Field attributes: `#[audit(exclude)]`, `#[audit(mask)]`. A name that is
/// not a field or column of the model is a compile error.
#[proc_macro_derive(Auditable, attributes(audit))]
pub fn derive_auditable(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    auditable::expand(input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
