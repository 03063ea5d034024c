"""Metrics for GAN evaluation: IS, FID, per-class FID (mFID), KMMD, precision and recall, class
consistency. inception_utils.py is the public entry (BigGAN-PyTorch's module name); this package
holds one job per module:

    backbones.py         the feature space: Inception v3 (torchvision's or the TF port) or the
                         project's classifier, any nn.Module images -> (features, logits)
    features.py          the one pass of an evaluation's samples through the backbone
    fid.py               Fréchet distance (FID, mFID) and its matrix square roots
    inception_score.py   the Inception Score
    kmmd.py              cGANTransfer's kernel MMD, blockwise
    precision_recall.py  improved precision and recall (k-NN balls), blockwise
    pairwise.py          squared distances block by block, for KMMD and precision and recall
    classes.py           which classes and resolution a backbone may evaluate; class consistency
    reference.py         the reference statistics on disk (moments, features) and their errors
    evaluation.py        the registry (metric name -> function) and Metrics, which measures every
                         asked metric of one evaluation from one feature pass

Every metric is computed in the feature space of a backbone, which carries `metric_space`; the
reference statistics on disk carry it too, so a classifier-space distance is never compared with,
or reported as, an Inception FID.

This file imports nothing, so that importing one module of the package loads only what it needs.
"""
