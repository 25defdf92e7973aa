"""Run by LLaMA-Factory's own interpreter: how its template tokenizes one chat turn (prompt ids, response ids).
Argument 1: model dir; 2: template name or ''; 3: JSON list of messages ending with the assistant turn."""
import json
import sys

from llamafactory.data.template import get_template_and_fix_tokenizer
from llamafactory.hparams import DataArguments
from transformers import AutoTokenizer

tok = AutoTokenizer.from_pretrained(sys.argv[1])
template = get_template_and_fix_tokenizer(tok, DataArguments(template=sys.argv[2] or None))
prompt, response = template.encode_oneturn(tok, json.loads(sys.argv[3]), None)
print(json.dumps([prompt, response]))
