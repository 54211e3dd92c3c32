"""Built-in calibrations: `tpfit calibrate` files measured on lent GPUs (raw logs in calibration/)."""
