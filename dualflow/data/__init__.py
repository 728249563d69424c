"""Data: the SynthManga generator, mangafy, datasets, paired transforms and the LightningDataModule."""
