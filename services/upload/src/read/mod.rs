//! Bytes into CSV records: what the body is ([`media`]), the body as a capped, counted,
//! decompressed stream ([`body`], digested by [`body_digest`]), its encoding, preamble and
//! dialect decided from the first bytes ([`prepare`], [`sniff`], [`detect`], what a header is:
//! [`header`], which quote: [`quotes`]) and turned into
//! UTF-8 ([`transcode`]), then the records with their line numbers ([`lines`]) and raw text
//! ([`tap`]) as the CSV reader finds them ([`parse`]); with `trim=true`, whitespace before an
//! opening quote is dropped first ([`trim`]), and a quote that is text inside a quoted field is
//! doubled ([`requote`]), both as [`filter`]s of the bytes.

pub(crate) mod body;
pub(crate) mod body_digest;
pub(crate) mod detect;
pub(crate) mod filter;
pub(crate) mod header;
pub(crate) mod lines;
pub(crate) mod media;
pub(crate) mod parse;
pub(crate) mod prepare;
pub(crate) mod quotes;
pub(crate) mod requote;
pub(crate) mod sniff;
pub(crate) mod tap;
pub(crate) mod transcode;
pub(crate) mod trim;
