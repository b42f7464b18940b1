//! Configuration: model, validation, normalisation, storage.
