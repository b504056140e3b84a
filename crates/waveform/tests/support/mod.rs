pub(crate) mod mitdb;
