"""Trainer adapters: the judge as a reward for TRL, verl, OpenRLHF and slime.

Each module imports its framework lazily (or not at all): importing an adapter never needs the
framework installed, and none of them loads a model unless given one.
"""
