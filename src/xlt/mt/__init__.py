"""Machine translation in the loop: FLORES-200 tags, translators (seq2seq, CTranslate2, lexicon),
a shared on-disk translation cache and chrF."""
