// kafkajs against a running skiff broker, one operation per run, for test_kafkajs.py.
// Prints one JSON line on stdout with what the operation observed; exits non-zero on error.
//
//   node client.js admin BROKER TOPIC
//   node client.js produce BROKER TOPIC COUNT PREFIX
//   node client.js group-of-two BROKER TOPIC GROUP COUNT LEAVE_AFTER PREFIX   (creates the topic,
//       two partitions, and produces COUNT values once both members have partitions)
//   node client.js consume BROKER TOPIC GROUP COUNT
'use strict';

const { Kafka, logLevel, ConfigResourceTypes, Partitioners } = require('kafkajs');

// How long one operation may wait for messages before it gives up.
const WAIT_MS = 60000;

const [operation, broker, topic, ...rest] = process.argv.slice(2);
const kafka = new Kafka({
  clientId: 'skiff-kafkajs-tests',
  brokers: [broker],
  logLevel: logLevel.WARN,
  // Log lines go to stderr: stdout carries only the result.
  logCreator: () => ({ namespace, level, log }) => {
    process.stderr.write(`kafkajs ${namespace} ${level}: ${JSON.stringify(log)}\n`);
  },
  retry: { retries: 10 },
});

function configValue(result, name) {
  const entry = result.resources[0].configEntries.find((config) => config.configName === name);
  return entry && { value: entry.configValue, isDefault: entry.isDefault };
}

async function admin() {
  const client = kafka.admin();
  await client.connect();
  try {
    const created = await client.createTopics({
      waitForLeaders: true,
      topics: [{ topic, numPartitions: 3, configEntries: [{ name: 'retention.ms', value: '86400000' }] }],
    });
    const describe = () => client.describeConfigs({
      includeSynonyms: false,
      resources: [{ type: ConfigResourceTypes.TOPIC, name: topic }],
    });
    const before = configValue(await describe(), 'retention.ms');
    await client.alterConfigs({
      validateOnly: false,
      resources: [{
        type: ConfigResourceTypes.TOPIC,
        name: topic,
        configEntries: [{ name: 'retention.ms', value: '3600000' }],
      }],
    });
    const after = configValue(await describe(), 'retention.ms');
    await client.createPartitions({ topicPartitions: [{ topic, count: 4 }] });
    const metadata = await client.fetchTopicMetadata({ topics: [topic] });
    const offsets = await client.fetchTopicOffsets(topic);
    // DeleteRecords: five records in partition 0, the first two deleted.
    const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
    await producer.connect();
    await producer.send({
      topic,
      acks: -1,
      messages: [0, 1, 2, 3, 4].map((index) => ({ value: `record-${index}`, partition: 0 })),
    });
    await producer.disconnect();
    await client.deleteTopicRecords({ topic, partitions: [{ partition: 0, offset: '2' }] });
    const trimmed = (await client.fetchTopicOffsets(topic)).find((entry) => entry.partition === 0);
    await client.deleteTopics({ topics: [topic] });
    const remaining = await client.listTopics();
    return {
      created,
      before,
      after,
      partitions: metadata.topics[0].partitions.length,
      offsets: offsets.length,
      trimmed: { low: trimmed.low, high: trimmed.high },
      deleted: !remaining.includes(topic),
    };
  } finally {
    await client.disconnect();
  }
}

async function produce(count, prefix) {
  const producer = kafka.producer({
    idempotent: true,
    maxInFlightRequests: 1,
    // An idempotent producer retries until it succeeds (the test's timeout bounds it).
    retry: { retries: Number.MAX_SAFE_INTEGER },
    createPartitioner: Partitioners.DefaultPartitioner,
  });
  await producer.connect();
  try {
    let acknowledged = 0;
    for (let start = 0; start < count; start += 100) {
      const messages = [];
      for (let i = start; i < Math.min(count, start + 100); i++) {
        messages.push({ key: `key-${i % 16}`, value: `${prefix}-${i}` });
      }
      const results = await producer.send({ topic, acks: -1, messages });
      acknowledged += messages.length;
      if (results.some((result) => result.errorCode !== 0)) {
        throw new Error(`produce errors: ${JSON.stringify(results)}`);
      }
    }
    return { acknowledged };
  } finally {
    await producer.disconnect();
  }
}

// Runs consumers of `group` until `count` distinct values have arrived. The member named
// `leaver` disconnects (leaving the group) once `leaveAfter` values have arrived in all.
// With `produceCount`, the messages are produced only once every member has partitions
// assigned, so that each member reads some before the leaver leaves.
async function consumeWith(members, group, count, leaver, leaveAfter, produceCount, prefix) {
  const seen = new Map();
  const byMember = {};
  const partitionsOf = {};
  let duplicates = 0;
  let left = false;
  const consumers = [];
  let finish;
  const done = new Promise((resolve) => { finish = resolve; });
  const timer = setTimeout(finish, WAIT_MS);
  let markAssigned;
  const everyoneAssigned = new Promise((resolve) => { markAssigned = resolve; });
  for (const member of members) {
    byMember[member] = 0;
    partitionsOf[member] = new Set();
  }
  for (const member of members) {
    const consumer = kafka.consumer({ groupId: group, sessionTimeout: 10000, heartbeatInterval: 500 });
    consumers.push(consumer);
    consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
      const assigned = payload.memberAssignment[topic] || [];
      if (member !== leaver || !left) {
        partitionsOf[member] = new Set([...partitionsOf[member], ...assigned]);
      }
      const current = members.every((name) => partitionsOf[name].size > 0);
      if (current) markAssigned();
    });
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ partition, message }) => {
        const value = message.value.toString();
        if (seen.has(value)) duplicates += 1;
        seen.set(value, { partition, offset: message.offset });
        byMember[member] += 1;
        if (member === leaver && !left && seen.size >= leaveAfter) {
          left = true;
          setImmediate(() => consumer.disconnect());
        }
        if (seen.size >= count) finish();
      },
    });
  }
  if (produceCount) {
    await Promise.race([everyoneAssigned, done]);
    await produce(produceCount, prefix);
  }
  await done;
  clearTimeout(timer);
  for (const consumer of consumers) await consumer.disconnect();
  const assigned = Object.fromEntries(Object.entries(partitionsOf).map(([name, set]) => [name, [...set].sort()]));
  return { values: [...seen.keys()], duplicates, byMember, assigned, left };
}

async function createTopic(partitions) {
  const client = kafka.admin();
  await client.connect();
  try {
    await client.createTopics({ waitForLeaders: true, topics: [{ topic, numPartitions: partitions }] });
  } finally {
    await client.disconnect();
  }
}

async function main() {
  switch (operation) {
    case 'admin':
      return admin();
    case 'produce':
      return produce(Number(rest[0]), rest[1]);
    case 'group-of-two':
      await createTopic(2);
      return consumeWith(['stays', 'leaves'], rest[0], Number(rest[1]), 'leaves', Number(rest[2]),
        Number(rest[1]), rest[3]);
    case 'consume':
      return consumeWith(['only'], rest[0], Number(rest[1]), null, 0, 0, null);
    default:
      throw new Error(`unknown operation ${operation}`);
  }
}

main().then(
  (result) => { process.stdout.write(`${JSON.stringify(result)}\n`); },
  (error) => { process.stderr.write(`kafkajs: ${error.stack || error}\n`); process.exit(1); },
);
