//! Reads `#[audit(..)]` and the parts of `#[sea_orm(..)]` that name a field's column variant.

use syn::{Data, DeriveInput, Fields, Ident, LitStr, Meta, Token, punctuated::Punctuated};

/// One field of the model as SeaORM sees it.
pub(super) struct Field {
    /// The Rust name without `r#`.
    pub(super) name: String,
    /// `#[sea_orm(enum_name = "..")]`: the `Column` variant's name, when given.
    pub(super) enum_name: Option<Ident>,
    /// `#[sea_orm(column_name = "..")]`, when given: accepted as a name for the field.
    pub(super) column_name: Option<String>,
    /// `#[sea_orm(ignore)]`: no column.
    pub(super) ignored: bool,
    /// `#[audit(exclude)]` / `#[audit(mask)]` on the field itself.
    pub(super) exclude: Option<Ident>,
    pub(super) mask: Option<Ident>,
}

/// What the attributes say, names not yet checked.
pub(super) struct Parsed {
    pub(super) entity_type: Option<LitStr>,
    pub(super) exclude: Vec<Ident>,
    pub(super) mask: Vec<Ident>,
    pub(super) log_unchanged: bool,
    /// `capture = "database"`: triggers write the rows, the hooks do not.
    pub(super) capture_database: bool,
    /// `seal = "deferred"` (with its span, for the error where it does not apply): the
    /// entries' hashes are computed later, by `capture_db::seal`.
    pub(super) seal_deferred: Option<proc_macro2::Span>,
    pub(super) fields: Vec<Field>,
}

pub(super) fn parse(input: &DeriveInput) -> syn::Result<Parsed> {
    let mut parsed = Parsed {
        entity_type: None,
        exclude: Vec::new(),
        mask: Vec::new(),
        log_unchanged: false,
        capture_database: false,
        seal_deferred: None,
        fields: fields(input)?,
    };
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("audit")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("entity_type") {
                let lit: LitStr = meta.value()?.parse()?;
                if lit.value().trim().is_empty() {
                    return Err(syn::Error::new(lit.span(), "entity_type must not be empty"));
                }
                parsed.entity_type = Some(lit);
            } else if meta.path.is_ident("exclude") {
                parsed.exclude.extend(idents(&meta)?);
            } else if meta.path.is_ident("mask") {
                parsed.mask.extend(idents(&meta)?);
            } else if meta.path.is_ident("log_unchanged") {
                parsed.log_unchanged = true;
            } else if meta.path.is_ident("capture") {
                let lit: LitStr = meta.value()?.parse()?;
                parsed.capture_database = match lit.value().as_str() {
                    "database" => true,
                    "hooks" => false,
                    _ => {
                        return Err(syn::Error::new(
                            lit.span(),
                            "capture must be \"hooks\" or \"database\"",
                        ));
                    }
                };
            } else if meta.path.is_ident("seal") {
                let lit: LitStr = meta.value()?.parse()?;
                parsed.seal_deferred = match lit.value().as_str() {
                    "deferred" => Some(lit.span()),
                    "on_write" => None,
                    _ => {
                        return Err(syn::Error::new(
                            lit.span(),
                            "seal must be \"on_write\" or \"deferred\"",
                        ));
                    }
                };
            } else {
                return Err(meta.error(
                    "unknown audit option; expected entity_type, exclude, mask, log_unchanged, \
                     capture or seal",
                ));
            }
            Ok(())
        })?;
    }
    Ok(parsed)
}

fn idents(meta: &syn::meta::ParseNestedMeta<'_>) -> syn::Result<Vec<Ident>> {
    let content;
    syn::parenthesized!(content in meta.input);
    let list = Punctuated::<Ident, Token![,]>::parse_terminated(&content)?;
    Ok(list.into_iter().collect())
}

fn string_value(meta: &Meta) -> syn::Result<LitStr> {
    let value = &meta.require_name_value()?.value;
    syn::parse2(quote::quote!(#value))
}

fn fields(input: &DeriveInput) -> syn::Result<Vec<Field>> {
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
        let mut parsed = Field {
            name: name.strip_prefix("r#").unwrap_or(&name).to_owned(),
            enum_name: None,
            column_name: None,
            ignored: false,
            exclude: None,
            mask: None,
        };
        for attr in &field.attrs {
            if attr.path().is_ident("sea_orm") {
                // Every form SeaORM accepts is a `Meta`; only two of them concern us.
                let metas =
                    attr.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)?;
                for meta in metas {
                    if meta.path().is_ident("ignore") {
                        parsed.ignored = true;
                    } else if meta.path().is_ident("enum_name") {
                        parsed.enum_name = Some(string_value(&meta)?.parse()?);
                    } else if meta.path().is_ident("column_name") {
                        parsed.column_name = Some(string_value(&meta)?.value());
                    }
                }
            } else if attr.path().is_ident("audit") {
                attr.parse_nested_meta(|meta| {
                    let ident = meta.path.get_ident().cloned();
                    match ident {
                        Some(i) if i == "exclude" => parsed.exclude = Some(i),
                        Some(i) if i == "mask" => parsed.mask = Some(i),
                        _ => return Err(meta.error("unknown field option; expected exclude or mask")),
                    }
                    Ok(())
                })?;
            }
        }
        out.push(parsed);
    }
    Ok(out)
}
