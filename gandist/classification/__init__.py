"""From a trained GAN to a measured classifier gain.

``synthetic``: class-balanced labelled datasets from a conditional generator (``gandist synth``);
``classifiers``: the small ResNets that are trained and tested; ``training``: training, testing,
saving one classifier; ``protocols``: real / CAS / mix / low-data studies (``gandist classify``);
``report`` and ``plots``: the JSON, Markdown and PNG a study writes.
"""
