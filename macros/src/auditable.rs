//! `#[derive(Auditable)]`: parse, validate, expand.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{Data, DeriveInput, Fields, Ident, LitStr, Token, punctuated::Punctuated};

/// One field of the model: its Rust name and the column name SeaORM uses for it.
struct Column {
    field: String,
    column: String,
}

#[derive(Default)]
struct Options {
    entity_type: Option<LitStr>,
    exclude: Vec<Ident>,
    mask: Vec<Ident>,
    log_unchanged: bool,
}

pub(crate) fn expand(input: DeriveInput) -> syn::Result<TokenStream> {
    let columns = columns(&input)?;
    let mut opts = Options::default();
    let mut exclude: Vec<String> = Vec::new();
    let mut mask: Vec<String> = Vec::new();

    for attr in input.attrs.iter().filter(|a| a.path().is_ident("audit")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("entity_type") {
                let lit: LitStr = meta.value()?.parse()?;
                if lit.value().trim().is_empty() {
                    return Err(syn::Error::new(lit.span(), "entity_type must not be empty"));
                }
                opts.entity_type = Some(lit);
            } else if meta.path.is_ident("exclude") {
                opts.exclude.extend(idents(&meta)?);
            } else if meta.path.is_ident("mask") {
                opts.mask.extend(idents(&meta)?);
            } else if meta.path.is_ident("log_unchanged") {
                opts.log_unchanged = true;
            } else {
                return Err(meta.error(
                    "unknown audit option; expected entity_type, exclude, mask or log_unchanged",
                ));
            }
            Ok(())
        })?;
    }
    for ident in &opts.exclude {
        exclude.push(resolve(&columns, ident)?);
    }
    for ident in &opts.mask {
        mask.push(resolve(&columns, ident)?);
    }

    // Field-level flags.
    if let Data::Struct(data) = &input.data {
        for (field, col) in data.fields.iter().zip(&columns) {
            for attr in field.attrs.iter().filter(|a| a.path().is_ident("audit")) {
                attr.parse_nested_meta(|meta| {
                    if meta.path.is_ident("exclude") {
                        exclude.push(col.column.clone());
                    } else if meta.path.is_ident("mask") {
                        mask.push(col.column.clone());
                    } else {
                        return Err(meta.error("unknown field option; expected exclude or mask"));
                    }
                    Ok(())
                })?;
            }
        }
    }
    exclude.dedup();
    mask.dedup();
    if let Some(both) = exclude.iter().find(|c| mask.contains(c)) {
        return Err(syn::Error::new_spanned(
            &input.ident,
            format!("column `{both}` is both excluded and masked; choose one"),
        ));
    }

    let ident = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let entity_type = match &opts.entity_type {
        Some(lit) => quote!(::core::option::Option::Some(#lit)),
        None => quote!(::core::option::Option::None),
    };
    let log_unchanged = opts.log_unchanged;
    Ok(quote! {
        impl #impl_generics ::sea_orm_audit::Auditable for #ident #ty_generics #where_clause {
            const ENTITY_TYPE: ::core::option::Option<&'static str> = #entity_type;
            const EXCLUDE: &'static [&'static str] = &[#(#exclude),*];
            const MASK: &'static [&'static str] = &[#(#mask),*];
            const LOG_UNCHANGED: bool = #log_unchanged;
        }
    })
}

fn idents(meta: &syn::meta::ParseNestedMeta<'_>) -> syn::Result<Vec<Ident>> {
    let content;
    syn::parenthesized!(content in meta.input);
    let list = Punctuated::<Ident, Token![,]>::parse_terminated(&content)?;
    Ok(list.into_iter().collect())
}

/// Maps a name from the attributes to its column name, or fails naming it.
fn resolve(columns: &[Column], ident: &Ident) -> syn::Result<String> {
    let name = ident.to_string();
    let name = name.strip_prefix("r#").unwrap_or(&name);
    columns
        .iter()
        .find(|c| c.field == name || c.column == name)
        .map(|c| c.column.clone())
        .ok_or_else(|| {
            syn::Error::new(
                ident.span(),
                format!("unknown field `{name}`: the model has no such field or column"),
            )
        })
}

fn columns(input: &DeriveInput) -> syn::Result<Vec<Column>> {
    let Data::Struct(data) = &input.data else {
        return Err(syn::Error::new_spanned(
            &input.ident,
            "Auditable can only be derived for a SeaORM Model struct",
        ));
    };
    let Fields::Named(fields) = &data.fields else {
        return Err(syn::Error::new_spanned(
            &input.ident,
            "Auditable needs a struct with named fields",
        ));
    };
    let mut out = Vec::new();
    for field in &fields.named {
        let Some(ident) = &field.ident else { continue };
        let name = ident.to_string();
        let field_name = name.strip_prefix("r#").unwrap_or(&name).to_owned();
        let mut column = field_name.clone();
        for attr in field.attrs.iter().filter(|a| a.path().is_ident("sea_orm")) {
            // Other sea_orm options are SeaORM's business: skip whatever we don't read.
            let _ = attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("column_name") {
                    let lit: LitStr = meta.value()?.parse()?;
                    column = lit.value();
                } else if meta.input.peek(Token![=]) {
                    let _: syn::Expr = meta.value()?.parse()?;
                } else if meta.input.peek(syn::token::Paren) {
                    let _content;
                    syn::parenthesized!(_content in meta.input);
                    let _: TokenStream = _content.parse()?;
                }
                Ok(())
            });
        }
        out.push(Column {
            field: field_name,
            column,
        });
    }
    Ok(out)
}
