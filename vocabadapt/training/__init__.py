"""Training: settings (the one list of output-changing keys), packing, checkpoints, callbacks, launch,
and `train_stage`, the one function both training stages run."""
