from mnist_opt.export import file_size


def test_the_size_is_the_trained_models_file(small_legacy_model):
    """Sizes are measured by converting the model with random weights: a trained model's flash form is as large."""
    from mnist_opt.export import flash
    from mnist_opt.export.tflite import convert
    from mnist_opt.tuning import inputs

    model, values, x, *_ = small_legacy_model
    representative = inputs.to_inputs(x[:20]).numpy()
    assert file_size.flash_bytes(values, representative) == len(flash.slim(convert(model, "int8", representative)))
