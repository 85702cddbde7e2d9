//! `#[derive(Auditable)]`: parse the attributes, validate the names against the model's
//! fields, expand to the impl. On an error the impl is still emitted (with the trait's
//! defaults), so the error is the only one the user sees.

mod expand;
mod parse;
mod validate;

use proc_macro2::TokenStream;
use syn::DeriveInput;

pub(crate) fn derive(input: &DeriveInput) -> TokenStream {
    let checked = parse::parse(input).and_then(|parsed| validate::validate(input, parsed));
    match checked {
        Ok(spec) => expand::expand(input, &spec),
        Err(err) => {
            let mut out = err.to_compile_error();
            out.extend(expand::fallback(input));
            out
        }
    }
}
