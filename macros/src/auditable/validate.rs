//! Resolves the names in the attributes to the entity's `Column` variants.
//!
//! The derive never works out a column *name*: it names the `Column` variant SeaORM generated
//! for the field, and the runtime asks that variant for its name (`IdenStatic::as_str`), so
//! `rename_all`, `column_name` and any other naming rule of SeaORM apply by construction. The
//! variant's name follows sea-orm-macros (`enum_name`, else the field in UpperCamelCase,
//! keywords escaped); were it ever to differ, the generated path names no variant and the
//! build fails: a wrong name cannot pass silently.

use heck::ToUpperCamelCase;
use proc_macro2::Span;
use syn::{DeriveInput, Ident, LitStr};

use super::parse::{Field, Parsed};

/// What the impl states, every name resolved to a `Column` variant.
pub(super) struct Spec {
    pub(super) entity_type: Option<LitStr>,
    pub(super) exclude: Vec<Ident>,
    pub(super) mask: Vec<Ident>,
    pub(super) log_unchanged: bool,
    pub(super) capture_database: bool,
    pub(super) seal_deferred: bool,
}

pub(super) fn validate(input: &DeriveInput, parsed: Parsed) -> syn::Result<Spec> {
    let mut exclude = Vec::new();
    let mut mask = Vec::new();
    for ident in &parsed.exclude {
        exclude.push(resolve(&parsed.fields, ident)?);
    }
    for ident in &parsed.mask {
        mask.push(resolve(&parsed.fields, ident)?);
    }
    for field in &parsed.fields {
        for (flag, list) in [(&field.exclude, &mut exclude), (&field.mask, &mut mask)] {
            if let Some(flag) = flag {
                list.push(column_variant(field, flag)?);
            }
        }
    }
    dedup(&mut exclude);
    dedup(&mut mask);
    if let Some(both) = exclude.iter().find(|c| mask.contains(c)) {
        return Err(syn::Error::new_spanned(
            &input.ident,
            format!("column `{both}` is both excluded and masked; choose one"),
        ));
    }
    if let (Some(span), false) = (parsed.seal_deferred, parsed.capture_database) {
        return Err(syn::Error::new(
            span,
            "seal = \"deferred\" applies to capture = \"database\": the hooks hash as they write",
        ));
    }
    Ok(Spec {
        entity_type: parsed.entity_type,
        exclude,
        mask,
        log_unchanged: parsed.log_unchanged,
        capture_database: parsed.capture_database,
        seal_deferred: parsed.seal_deferred.is_some(),
    })
}

fn dedup(list: &mut Vec<Ident>) {
    let mut seen = Vec::new();
    list.retain(|i| {
        let fresh = !seen.contains(i);
        seen.push(i.clone());
        fresh
    });
}

/// The `Column` variant of the field named `ident`, or an error naming it.
fn resolve(fields: &[Field], ident: &Ident) -> syn::Result<Ident> {
    let name = ident.to_string();
    let name = name.strip_prefix("r#").unwrap_or(&name);
    let field = fields
        .iter()
        .find(|f| f.name == name)
        .or_else(|| {
            fields
                .iter()
                .find(|f| f.column_name.as_deref() == Some(name))
        })
        .ok_or_else(|| {
            syn::Error::new(
                ident.span(),
                format!(
                    "unknown field `{name}`: the model has no such field \
                     (name the field; a column is known by name only from its `column_name`)"
                ),
            )
        })?;
    column_variant(field, ident)
}

fn column_variant(field: &Field, at: &Ident) -> syn::Result<Ident> {
    if field.ignored {
        return Err(syn::Error::new(
            at.span(),
            format!(
                "field `{}` is `#[sea_orm(ignore)]`: it has no column to audit",
                field.name
            ),
        ));
    }
    if let Some(name) = &field.enum_name {
        return Ok(name.clone());
    }
    let camel = field.name.to_upper_camel_case();
    Ok(match camel.as_str() {
        "Self" | "Crate" => Ident::new(&format!("{camel}_"), Span::call_site()),
        _ => Ident::new(&camel, at.span()),
    })
}
