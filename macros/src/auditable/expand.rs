//! The `impl Auditable`.

use proc_macro2::TokenStream;
use quote::quote;
use syn::DeriveInput;

use super::validate::Spec;

pub(super) fn expand(input: &DeriveInput, spec: &Spec) -> TokenStream {
    let entity_type = match &spec.entity_type {
        Some(lit) => quote!(::core::option::Option::Some(#lit)),
        None => quote!(::core::option::Option::None),
    };
    let log_unchanged = spec.log_unchanged;
    let (exclude, mask) = (&spec.exclude, &spec.mask);
    let capture = if spec.capture_database {
        quote!(::sea_orm_audit::Capture::Database)
    } else {
        quote!(::sea_orm_audit::Capture::Hooks)
    };
    let seal = if spec.seal_deferred {
        quote!(::sea_orm_audit::Seal::Deferred)
    } else {
        quote!(::sea_orm_audit::Seal::OnWrite)
    };
    body(
        input,
        quote! {
            const ENTITY_TYPE: ::core::option::Option<&'static str> = #entity_type;
            const EXCLUDE: &'static [::sea_orm_audit::ColumnOf<Self>] = &[#(::sea_orm_audit::ColumnOf::<Self>::#exclude),*];
            const MASK: &'static [::sea_orm_audit::ColumnOf<Self>] = &[#(::sea_orm_audit::ColumnOf::<Self>::#mask),*];
            const LOG_UNCHANGED: bool = #log_unchanged;
            const CAPTURE: ::sea_orm_audit::Capture = #capture;
            const SEAL: ::sea_orm_audit::Seal = #seal;
        },
    )
}

/// The impl with the trait's defaults: emitted beside a compile error so that the error is
/// not followed by "`Model: Auditable` is not satisfied" wherever the model is used.
pub(super) fn fallback(input: &DeriveInput) -> TokenStream {
    body(input, TokenStream::new())
}

fn body(input: &DeriveInput, items: TokenStream) -> TokenStream {
    let ident = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    quote! {
        #[automatically_derived]
        impl #impl_generics ::sea_orm_audit::Auditable for #ident #ty_generics #where_clause {
            #items
        }
    }
}
