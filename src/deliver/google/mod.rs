//! Google Ads through the Data Manager API: request building, OAuth and
//! error classification (spec/google.md §1–§2, §7).

pub mod request;
