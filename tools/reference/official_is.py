"""The paper's Inception Score arithmetic (its evaluation code's `inception_score`): contiguous
splits of floor(N / splits) images, exp of the mean KL divergence of each image's class
distribution from its split's marginal; mean and std over the splits. Shared by the reference
scripts of both IS classifiers (torchvision's InceptionV3, the Places365 ResNet-50)."""

import numpy as np
import scipy.stats


def official_is(preds, splits):
    n = preds.shape[0]
    scores = []
    for k in range(splits):
        part = preds[k * (n // splits):(k + 1) * (n // splits), :]
        py = np.mean(part, axis=0)
        scores.append(np.exp(np.mean([scipy.stats.entropy(part[i, :], py) for i in range(part.shape[0])])))
    return float(np.mean(scores)), float(np.std(scores))
