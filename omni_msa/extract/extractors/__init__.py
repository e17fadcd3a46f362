"""The built-in modality extractors, one module each; every module registers its extractor when
imported (`omni_msa.extract.base.register_extractor`), and imports its library only when it runs."""
