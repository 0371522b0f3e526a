"""Pure builders: DialogueModel spec and observed children in, desired children and status out."""
