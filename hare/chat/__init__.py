"""Chat: supervised fine-tuning with a chat template (``sft``), an OpenAI-compatible server
(``serve``) and a terminal chat (``client``)."""
