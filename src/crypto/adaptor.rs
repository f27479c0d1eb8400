//! Adaptor signatures and signature price points.
