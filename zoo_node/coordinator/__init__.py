"""The run owner's coordinator: settlement of epochs, the run's time series and the CoordinatorService API.

Layering: never imports torch or hivemind.
"""
