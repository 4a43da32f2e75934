"""Image stores: one small interface (``base.ImageStore``) and its drivers."""
