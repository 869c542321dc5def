//! Range calibration (being written).
