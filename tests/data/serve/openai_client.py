"""An unmodified agent's use of the official `openai` client against `retroformer serve`.

Reads RETROFORMER_BASE_URL and RETROFORMER_MODEL; prints one JSON object with what it saw.
"""
import json
import os

import openai
from openai import OpenAI

base, model = os.environ["RETROFORMER_BASE_URL"], os.environ["RETROFORMER_MODEL"]
client = OpenAI(base_url=base, api_key="unused", max_retries=0, timeout=300)
out = {"openai_version": openai.__version__}
out["models"] = [m.id for m in client.models.list()]

msgs = [{"role": "user", "content": "Name three colours."}]
r = client.chat.completions.create(model=model, messages=msgs, max_tokens=16, temperature=0)
out["chat"] = r.choices[0].message.content
out["chat_finish"] = r.choices[0].finish_reason
out["chat_usage"] = r.usage.model_dump()

pieces, usage, chunks = [], None, 0
stream = client.chat.completions.create(
    model=model, messages=msgs, max_tokens=16, temperature=0, stream=True,
    stream_options={"include_usage": True})
for c in stream:
    chunks += 1
    if c.choices:
        pieces.append(c.choices[0].delta.content or "")
    if c.usage:
        usage = c.usage.model_dump()
out["stream"], out["stream_usage"], out["stream_chunks"] = "".join(pieces), usage, chunks

lp = client.chat.completions.create(
    model=model, messages=msgs, max_tokens=16, temperature=0, logprobs=True, top_logprobs=2,
    extra_body={"return_token_ids": True})
c = lp.choices[0]
out["logprobs"] = {
    "content": c.message.content,
    "tokens": [t.token for t in c.logprobs.content],
    "logprobs": [t.logprob for t in c.logprobs.content],
    "top": [[a.logprob for a in t.top_logprobs] for t in c.logprobs.content],
    "token_ids": c.model_extra["token_ids"],
    "prompt_token_ids": c.model_extra["prompt_token_ids"],
}

t = client.completions.create(model=model, prompt="1, 2, 3, 4,", max_tokens=6, temperature=0)
out["text"] = t.choices[0].text

schema = {"type": "object", "properties": {
    "colour": {"enum": ["red", "green", "blue"]}, "count": {"type": "integer"}}}
j = client.chat.completions.create(
    model=model, messages=[{"role": "user", "content": "A colour and a count, as JSON."}],
    max_tokens=64, temperature=0,
    response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": schema}})
out["json"] = j.choices[0].message.content

tools = [{"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
tc = client.chat.completions.create(
    model=model, messages=[{"role": "user", "content": "What is the weather in Paris?"}],
    tools=tools, tool_choice="required", max_tokens=64, temperature=0)
call = tc.choices[0].message.tool_calls[0]
out["tool_name"], out["tool_finish"] = call.function.name, tc.choices[0].finish_reason
out["tool_arguments"] = json.loads(call.function.arguments)

try:
    client.chat.completions.create(model="no-such-model", messages=msgs)
    out["unknown_model"] = "accepted"
except openai.NotFoundError as e:
    out["unknown_model"] = e.status_code
try:
    client.chat.completions.create(model=model, messages=msgs, temperature=7)
    out["bad_temperature"] = "accepted"
except openai.BadRequestError as e:
    out["bad_temperature"] = e.status_code
print(json.dumps(out))
