"""An unmodified agent loop on the official `openai` client, against `retroformer serve`.

A toy environment asks for the sum of two numbers; the agent answers, is told whether it was
right, and tries once more when it was not. Each episode is one conversation with its own
`session_id`; at its end the agent reports the episode's return on POST /v1/feedback, as an
agent feeding the trainer would. Reads RETROFORMER_BASE_URL and RETROFORMER_MODEL; prints one
JSON object: the episodes (id, return) and what /v1/feedback answered.
"""
import json
import os
import re
import urllib.request

from openai import OpenAI

base, model = os.environ["RETROFORMER_BASE_URL"], os.environ["RETROFORMER_MODEL"]
client = OpenAI(base_url=base, api_key="unused", max_retries=0, timeout=300)


def reply(messages, session):
    r = client.chat.completions.create(
        model=model, messages=messages, max_tokens=12, temperature=0.7, seed=1,
        extra_body={"session_id": session})
    return r.choices[0].message.content or ""


def feedback(session, reward):
    body = json.dumps({"session_id": session, "reward": reward}).encode()
    req = urllib.request.Request(base + "/feedback", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.load(r)


out = {"episodes": [], "feedback": []}
for episode, (a, b) in enumerate([(2, 3), (4, 5)]):
    session = f"sum-{episode}"
    messages = [{"role": "user", "content": f"What is {a} + {b}? Answer with the number only."}]
    reward = 0.0
    for attempt in range(2):
        text = reply(messages, session)
        messages.append({"role": "assistant", "content": text})
        numbers = re.findall(r"-?\d+", text)
        if numbers and int(numbers[0]) == a + b:
            reward = 1.0 if attempt == 0 else 0.5
            break
        messages.append({"role": "user", "content": "That is not right. Try again."})
    replies = sum(m["role"] == "assistant" for m in messages)
    out["episodes"].append({"session": session, "return": reward, "replies": replies})
    out["feedback"].append(feedback(session, reward))
print(json.dumps(out))
