"""Factories of test_onnx_real_exports' recurrent models for the factory route."""

from tests.loaders.test_onnx_real_exports import recurrent_factory


def lstm_bidirectional():
    return recurrent_factory("LSTM", True)


def gru_bidirectional():
    return recurrent_factory("GRU", True)
