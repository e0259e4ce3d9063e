"""Stage-2 methods: the table of what each reads and trains (torch-free), attaching and saving adapters, X-Mixup."""
