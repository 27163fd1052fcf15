//! Legacy (wire version 1) JSON bodies.
